"""Dependencies of media-api's routes: the services built in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from apps.common.safe_fetch import SafeFetcher
from apps.media_api.services.media import MediaService
from apps.media_api.services.resolve import Resolver
from apps.media_api.settings import MediaApiSettings


def get_media(request: Request) -> MediaService:
    media: MediaService = request.app.state.media
    return media


def get_resolver(request: Request) -> Resolver:
    resolver: Resolver = request.app.state.resolver
    return resolver


def get_fetcher(request: Request) -> SafeFetcher:
    fetcher: SafeFetcher = request.app.state.fetcher
    return fetcher


def get_settings(request: Request) -> MediaApiSettings:
    settings: MediaApiSettings = request.app.state.settings
    return settings


MediaDep = Annotated[MediaService, Depends(get_media)]
ResolverDep = Annotated[Resolver, Depends(get_resolver)]
FetcherDep = Annotated[SafeFetcher, Depends(get_fetcher)]
SettingsDep = Annotated[MediaApiSettings, Depends(get_settings)]
