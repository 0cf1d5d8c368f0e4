"""Dependencies of media-api's routes: the services built in the lifespan (`apps.common.state`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from apps.common.safe_fetch import SafeFetcher
from apps.common.state import state_dependency
from apps.media_api.services.media import MediaService
from apps.media_api.services.resolve import Resolver
from apps.media_api.settings import MediaApiSettings

MediaDep = Annotated[MediaService, Depends(state_dependency("media", MediaService))]
ResolverDep = Annotated[Resolver, Depends(state_dependency("resolver", Resolver))]
FetcherDep = Annotated[SafeFetcher, Depends(state_dependency("fetcher", SafeFetcher))]
SettingsDep = Annotated[MediaApiSettings, Depends(state_dependency("settings", MediaApiSettings))]
