"""The `response` object in response-api's OpenAPI document (its routes return it as built JSON).

Documentation only (`apps.common.openapi.document_models`): the schema is the type the body is built
with (`types.ResponseBody`), so the document and the code cannot drift apart. Like OpenAI's object,
it may carry fields it does not name. With `stream: true`, `POST /v1/responses` answers
`response.*` events as SSE instead.
"""

from __future__ import annotations

from apps.common.openapi import ErrorStatuses, ResponseModels
from apps.response_api.types import ResponseBody

_RESPONSE = "/v1/responses/{response_id}"

RESPONSE_MODELS: ResponseModels = {
    ("POST", "/v1/responses"): ResponseBody,
    ("GET", _RESPONSE): ResponseBody,
    ("POST", f"{_RESPONSE}/cancel"): ResponseBody,
}

# A referenced conversation or previous response that does not exist; llm-api's failures.
ERROR_STATUSES: ErrorStatuses = {("POST", "/v1/responses"): (404, 502, 504)}
