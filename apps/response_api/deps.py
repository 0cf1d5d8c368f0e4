"""FastAPI dependencies of response-api: the service built in the lifespan (`apps.common.state`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from apps.common.state import state_dependency
from apps.response_api.services.responses import ResponseService

ServiceDep = Annotated[ResponseService, Depends(state_dependency("responses", ResponseService))]
