"""`/v1/responses`: create (plain, streamed or background), retrieve (or stream again), cancel, delete,
input items."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from apps.common.auth.principal import PrincipalDep
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.common.storable import dumps
from apps.response_api.deps import ServiceDep
from apps.response_api.schemas import CreateResponseRequest, DeletedResponse, InputItemsPage
from apps.response_api.services.responses import ResponseService
from apps.response_api.services.runs import ResponseRun

router = APIRouter(prefix="/v1/responses", tags=["responses"], route_class=GuardedRoute)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _json(body: object) -> Response:
    return Response(dumps(body), media_type="application/json")


@router.post("")
async def create_response(
    body: CreateResponseRequest, principal: PrincipalDep, service: ServiceDep
) -> Response:
    """Create a model response; runs MCP tools in a loop; streams `response.*` events when asked."""
    run = await service.create(body, principal)
    if run.events is not None:
        return StreamingResponse(_relay(run, service), media_type="text/event-stream", headers=SSE_HEADERS)
    if body.background:
        return _json(run.state.body)
    await run.done.wait()
    if run.storage_error is not None:
        raise run.storage_error
    if run.refused is not None:
        raise APIError(run.refused.status, run.refused.message, code=run.refused.code)
    return _json(run.state.body)


async def _relay(run: ResponseRun, service: ResponseService) -> AsyncIterator[bytes]:
    assert run.events is not None
    try:
        while (chunk := await run.events.get()) is not None:
            yield chunk
    finally:
        run.state.stop_listening()
        if not run.background:
            service.abandon(run)


@router.get("/{response_id}")
async def get_response(
    response_id: str,
    principal: PrincipalDep,
    service: ServiceDep,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """A stored response (while it runs, its current state).

    With `stream=true`, a background response created with `stream: true` is streamed again: its
    `response.*` events after sequence number `starting_after` (all of them without it), then the
    new ones live until it ends, from whichever replica runs it.
    """
    if stream:
        frames = await service.stream(principal, response_id, starting_after)
        return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
    return _json(await service.get(principal, response_id))


@router.post("/{response_id}/cancel")
async def cancel_response(response_id: str, principal: PrincipalDep, service: ServiceDep) -> Response:
    """Stop a running response, including its tool calls in flight; a finished one is returned as is."""
    return _json(await service.cancel(principal, response_id))


@router.delete("/{response_id}")
async def delete_response(response_id: str, principal: PrincipalDep, service: ServiceDep) -> DeletedResponse:
    """Delete a response (stopping it first if it runs), its input items and its tool executions."""
    await service.delete(principal, response_id)
    return DeletedResponse(id=response_id)


@router.get("/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    principal: PrincipalDep,
    service: ServiceDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> InputItemsPage:
    """The input items of a response, newest first unless `order=asc`."""
    items, has_more = await service.input_items(principal, response_id, after=after, limit=limit, order=order)
    return InputItemsPage(
        data=items,
        first_id=items[0].get("id") if items else None,
        last_id=items[-1].get("id") if items else None,
        has_more=has_more,
    )
