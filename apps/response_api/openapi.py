"""The `response` object in response-api's OpenAPI document (its routes return it as built JSON).

Documentation only (`apps.common.openapi.document_models`); the model accepts more fields than it
names, as OpenAI's Responses API object does. With `stream: true`, `POST /v1/responses` answers
`response.*` events as SSE instead.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from apps.common.openapi import ErrorStatuses, ResponseModels


class ResponseObject(BaseModel):
    model_config = ConfigDict(extra="allow", title="Response")

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]
    model: str | None = None
    output: list[dict[str, Any]]
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


_RESPONSE = "/v1/responses/{response_id}"

RESPONSE_MODELS: ResponseModels = {
    ("POST", "/v1/responses"): ResponseObject,
    ("GET", _RESPONSE): ResponseObject,
    ("POST", f"{_RESPONSE}/cancel"): ResponseObject,
}

# A referenced conversation or previous response that does not exist; llm-api's failures.
ERROR_STATUSES: ErrorStatuses = {("POST", "/v1/responses"): (404, 502, 504)}
