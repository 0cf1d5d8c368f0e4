"""Settings of response-api."""

from __future__ import annotations

from apps.common.settings import ServiceSettings


class ResponseApiSettings(ServiceSettings):
    service_name: str = "response-api"
    db_schema: str = "response_api"
