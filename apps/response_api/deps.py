"""FastAPI dependencies of response-api."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from apps.response_api.services.responses import ResponseService


def get_service(request: Request) -> ResponseService:
    service: ResponseService = request.app.state.responses
    return service


ServiceDep = Annotated[ResponseService, Depends(get_service)]
