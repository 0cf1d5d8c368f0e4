"""Conversations, which llm-api owns: response-api reads and extends them over HTTP.

Every call carries the caller's own credentials, so llm-api decides ownership (another user's
conversation is a 404, as for a missing one); the internal routes also need the internal token
(`AUTH__INTERNAL_TOKEN`, the one already used for API-key checks).

A response that starts a new conversation names it itself (`new_conversation_id`, the shape of
llm-api's own ids) and llm-api creates it with the response's items, in the one append at its end
(`append(..., create=True)`); a response that fails or is cancelled creates it empty. This saved a
call to llm-api at the start of every such response, and a response's fixed cost is what #15
measures. A streamed or background response announces the id before its end, so it makes the
conversation first (`create`; a foreground stream while its run starts, before any tool runs): a
conversation its user deleted meanwhile must stay deleted.

A conversation in a project carries the project's instructions (`project_instructions`, read with
the items in the same call); `with_project_instructions` puts them before the response's own
`instructions` as a system message of their own. They are not stored anywhere by response-api: the
project's current instructions apply to every turn, and the response's `instructions` field stays
what the caller sent.

Errors: a missing conversation is the caller's 404 (`param: conversation`); llm-api being
unreachable, misconfigured (403 on the internal token) or failing is a 503 with `Retry-After`.
Appending a response's items is the write behind its acknowledgement: it is idempotent (keyed by
the response id) and retried through a short llm-api outage (`append`).

Every stored response extends a conversation, so these calls are on its fixed cost: they go
over aiohttp (see `apps.common.http`; httpx with its instrumentation cost ~2 ms of CPU a call),
with trace context propagated by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from opentelemetry.propagate import inject

from apps.common.auth.remote_keys import INTERNAL_TOKEN_HEADER
from apps.common.durable import durably
from apps.common.errors import APIError
from apps.common.http import DEFAULT_CONNECT_TIMEOUT, transport_failure
from apps.common.ids import random_id
from apps.common.storable import dumps, loads

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# A conversation call never streams: a silence this long is llm-api (or its database) stuck.
READ_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=DEFAULT_CONNECT_TIMEOUT, sock_read=30.0)


def new_conversation_id() -> str:
    """An id for a response's new conversation, of the shape llm-api gives its own."""
    return random_id("conv")


class ConversationMissing(APIError):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            404, f"Conversation '{conversation_id}' not found.", param="conversation", code="not_found"
        )


class Conversations:
    def __init__(self, http: aiohttp.ClientSession, llm_api_url: str, internal_token: str | None) -> None:
        self._http = http
        self._base = llm_api_url.rstrip("/")
        self._internal = {INTERNAL_TOKEN_HEADER: internal_token} if internal_token else {}

    async def history(
        self, conversation_id: str, headers: dict[str, str]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The conversation's items, oldest first, and its project's instructions (None without)."""
        body = await self._call("GET", self._items_path(conversation_id), headers, missing=conversation_id)
        data: list[dict[str, Any]] = body["data"]
        return data, _instructions(body)

    async def project_instructions(self, conversation_id: str, headers: dict[str, str]) -> str | None:
        """The instructions of the conversation's project; None without one (raises
        `ConversationMissing` if it is gone)."""
        path = self._path(conversation_id)
        body = await self._call("GET", path, headers, missing=conversation_id)
        return _instructions(body)

    async def exists(self, conversation_id: str, headers: dict[str, str]) -> bool:
        """Whether the caller's conversation is still there (one read, not retried)."""
        try:
            await self.project_instructions(conversation_id, headers)
        except ConversationMissing:
            return False
        return True

    async def append(
        self,
        conversation_id: str,
        items: Sequence[Mapping[str, Any]],
        headers: dict[str, str],
        *,
        key: str,
        budget: float,
        create: bool = False,
    ) -> None:
        """Append a response's items in one write, exactly once (raises `ConversationMissing` if the
        conversation is gone). `create`: the conversation is the response's new one, made by this
        call if it is not there yet (`items` may then be empty).

        `key` (the response id) is sent as `Idempotency-Key`: llm-api stores one append per key, so
        an attempt whose answer was lost with the connection is simply sent again. llm-api being
        away (unreachable, or answering 502/503/504) is retried for `budget` seconds, then raises
        `StorageUnavailable` (a 503, or the stream's `error` event); any other refusal at once.
        """
        path = self._items_path(conversation_id) + ("?create=true" if create else "")
        sent = {**headers, IDEMPOTENCY_KEY_HEADER: key}

        async def once() -> None:
            await self._call("POST", path, sent, json={"items": items}, missing=conversation_id)

        await durably(
            once,
            budget=budget,
            what="the response in its conversation",
            transient=lambda exc: isinstance(exc, LlmApiAway),
        )

    async def create(self, conversation_id: str, headers: dict[str, str], *, budget: float) -> None:
        """Make the caller's new conversation `conversation_id`, empty (nothing if it is there)."""
        await self.append(conversation_id, [], headers, key=conversation_id, budget=budget, create=True)

    async def withdraw(self, conversation_id: str, headers: dict[str, str], *, key: str) -> None:
        """Delete the caller's new conversation made for response `key`, which was then not stored
        (its client got an error and never learned the id). llm-api keeps it if it holds anything
        but that response's items (409); a missing one is already withdrawn. One attempt."""
        path = f"{self._path(conversation_id)}?key={quote(key, safe='')}"
        await self._call("DELETE", path, headers)

    async def withdraw_items(self, conversation_id: str, headers: dict[str, str], *, key: str) -> None:
        """Take the items response `key` appended out of the caller's conversation, which stays: the
        response was then not stored, and its client was told it failed. Nothing there, or no such
        conversation, is already withdrawn. One attempt."""
        path = f"{self._items_path(conversation_id)}?key={quote(key, safe='')}"
        await self._call("DELETE", path, headers)

    async def import_legacy(self, payload: dict[str, Any]) -> None:
        """Hand one conversation of response-api's former store to llm-api (see migration 0003)."""
        await self._call("POST", "/internal/conversations/import", {}, json=payload)

    @staticmethod
    def _path(conversation_id: str) -> str:
        return f"/internal/conversations/{quote(conversation_id, safe='')}"

    @classmethod
    def _items_path(cls, conversation_id: str) -> str:
        return f"{cls._path(conversation_id)}/items"

    async def _call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        json: Any = None,
        missing: str | None = None,
        internal: bool = True,
    ) -> dict[str, Any]:
        sent = {**headers, **(self._internal if internal else {}), "Content-Type": "application/json"}
        inject(sent)
        content = dumps(json) if json is not None else None
        try:
            async with self._http.request(
                method, self._base + path, data=content, headers=sent, timeout=READ_TIMEOUT
            ) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            if transport_failure(exc) is None:  # not the wire: retrying would not help
                raise _Unavailable(f"llm-api could not be read ({exc.__class__.__name__})") from exc
            raise LlmApiAway(f"llm-api is unreachable ({exc.__class__.__name__})") from exc
        if status == 404 and missing is not None:
            raise ConversationMissing(missing)
        if status >= 300:
            raise _refused(status, raw)
        if status == 204:
            return {}
        try:
            body: dict[str, Any] = loads(raw)  # exact where orjson would round a huge integer
        except ValueError as exc:
            raise _Unavailable("llm-api answered something other than JSON") from exc
        return body


class _Unavailable(APIError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            503,
            f"The conversation store is unavailable: {detail}.",
            code="conversations_unavailable",
            headers={"Retry-After": "5"},
        )


class LlmApiAway(_Unavailable):
    """llm-api could not be reached or said it is away: worth trying again shortly."""


def with_project_instructions(
    messages: list[dict[str, Any]], instructions: str | None
) -> list[dict[str, Any]]:
    """The project's instructions first, as a system message of their own, then the response's."""
    if not instructions:
        return messages
    return [{"role": "system", "content": instructions}, *messages]


def _instructions(body: dict[str, Any]) -> str | None:
    found = body.get("project_instructions")  # absent from an llm-api older than projects
    return found if isinstance(found, str) and found else None


def _refused(status: int, raw: bytes) -> APIError:
    try:
        error = orjson.loads(raw).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    if status == 409 and error.get("code") == "append_withdrawn":
        # This response's append was withdrawn (it was found failed): nothing of it is stored, and
        # retrying cannot store it; not the caller's conflict either.
        return _Unavailable(f"the response's items were withdrawn from the conversation ({message})")
    if status in (401, 400, 409, 413, 429):  # about the caller or the request: theirs to see
        return APIError(status, message or f"llm-api answered {status}.", code=error.get("code"))
    detail = f"conversations are unavailable (llm-api answered {status}: {message or '-'})"
    if status in (502, 503, 504):  # llm-api or its database is away for now
        return LlmApiAway(detail)
    return _Unavailable(detail)
