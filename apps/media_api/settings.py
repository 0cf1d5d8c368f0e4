"""Settings of media-api."""

from __future__ import annotations

from apps.common.settings import ServiceSettings


class MediaApiSettings(ServiceSettings):
    service_name: str = "media-api"
    db_schema: str = "media_api"
