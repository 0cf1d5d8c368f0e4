"""Chat completions: from the caller's request to the upstream and back, and into the conversation.

Per request: parse and check the body (one parse), pick the provider (in memory), load the
conversation and its recent items when one is named (one read), resolve media placeholders when the
raw body contains one, forward, relay. Nothing is written before or during the answer. A stored turn
is committed when the answer is complete and before the client is told so (the plain 200, the
stream's `[DONE]`); when it cannot be, the client gets a 503 or an SSE `error` event instead. A new
conversation (`conversation: {}`) is inserted in that same transaction, so a turn that could not be
stored leaves no empty conversation behind.

Decisions:
- Project instructions: a conversation in a project gets the project's instructions as the first
  system message of every turn, before the request's own; they are not stored as an item (the
  project may change them, and every later turn gets the current ones).
- History: with a conversation, its last `history_max_items` completed items are put after the
  request's leading system/developer messages and before the rest. Clients send only the new turn.
- Stored: every non-system message of the request (the new input) and the assistant reply, with its
  finish reason and the upstream's own usage. System messages are per-request instructions.
- Stored items keep `jan_*` placeholders, not the presigned URLs (those expire).
- A plain response without a conversation is relayed byte for byte; with one it gains a
  `conversation` field. The response `model` is whatever the upstream says.
- A stream always ends with a usage chunk: the provider's, or llm-api's estimate when the provider
  sent none (`providers/stream_usage.py`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from apps.common.auth.principal import Principal
from apps.common.errors import APIError
from apps.common.ids import random_id
from apps.common.storable import dumps, loads
from apps.llm_api.providers.compat import adapt
from apps.llm_api.providers.registry import ModelRoute, ProviderRegistry
from apps.llm_api.providers.stream_usage import UsageWatch, prompt_chars
from apps.llm_api.providers.upstream import Upstream, open_chat, upstream_failure
from apps.llm_api.services.conversations import ConversationStore
from apps.llm_api.services.items import items_to_messages, title_from
from apps.llm_api.services.media import MediaResolver, has_placeholder
from apps.llm_api.services.persistence import Turn, TurnWriter
from apps.llm_api.services.relay import IncompleteReason, RelayOutcome, StreamRelayResponse
from apps.llm_api.services.turn_store import AnyConversation, TurnConversation
from apps.llm_api.wire.chat import ChatRequest, ConversationRef, parse_chat_request

_JAN_FIELDS = ("conversation", "store")
_INSTRUCTION_ROLES = frozenset({"system", "developer"})


@dataclass
class Prepared:
    route: ModelRoute
    upstream_body: bytes
    upstream_messages: list[dict[str, Any]]
    tools: Any
    stream: bool
    public_model: str
    conversation: AnyConversation | None
    title: str | None
    inputs: list[dict[str, Any]]
    store: bool

    @property
    def recording(self) -> bool:
        return self.conversation is not None and self.store

    def conversation_ref(self) -> dict[str, Any]:
        assert self.conversation is not None
        return {"id": self.conversation.public_id, "title": self.conversation.title or self.title}


@dataclass
class ChatService:
    registry: ProviderRegistry
    upstream: Upstream
    store: ConversationStore
    writer: TurnWriter
    media: MediaResolver
    history_max_items: int

    async def respond(self, raw: bytes, principal: Principal) -> Response:
        prepared = await self.prepare(raw, principal)
        if prepared.stream:
            return await self._stream(prepared)
        return await self._plain(prepared)

    async def prepare(self, raw: bytes, principal: Principal) -> Prepared:
        body, request = parse_chat_request(raw)
        route = self.registry.select(request.model)
        if route is None:
            raise APIError(
                404,
                f"The model '{request.model}' does not exist or is not available. See GET /v1/models.",
                param="model",
                code="model_not_found",
            )
        if request.conversation is not None and request.store is not False and not self.writer.has_room():
            raise APIError(
                503,
                "Conversation turns are arriving faster than they can be stored; retry shortly.",
                code="server_overloaded",
                headers={"Retry-After": "1"},
            )
        messages: list[dict[str, Any]] = body["messages"]
        conversation, history, instructions = await self._conversation(request, principal)
        store = request.store is not False
        upstream_messages = _with_history(messages, history)
        # Stored items keep their placeholders, so history may need resolving even when the new
        # message has none (resolve() returns at once when there is nothing to do).
        if has_placeholder(raw) or history:
            upstream_messages = await self.media.resolve(upstream_messages, principal.forward_headers())
        if instructions:
            upstream_messages = [{"role": "system", "content": instructions}, *upstream_messages]
        title = None
        if conversation is not None and not conversation.title:
            title = title_from(messages)
        return Prepared(
            route=route,
            upstream_body=_upstream_body(body, request, route, upstream_messages),
            upstream_messages=upstream_messages,
            tools=body.get("tools"),
            stream=bool(request.stream),
            public_model=request.model,
            conversation=conversation,
            title=title,
            inputs=[m for m in messages if m.get("role") not in _INSTRUCTION_ROLES],
            store=store,
        )

    async def _conversation(
        self, request: ChatRequest, principal: Principal
    ) -> tuple[AnyConversation | None, list[dict[str, Any]], str | None]:
        """The conversation, its recent history and its project's instructions."""
        ref = request.conversation
        if ref is None:
            return None, [], None
        if isinstance(ref, str):
            ref = ConversationRef(id=ref)
        if ref.id is None:
            instructions = None
            if ref.project_id is not None:
                instructions = await self.store.project_instructions(principal.user_id, ref.project_id)
            if request.store is False:  # no turn to carry it: the conversation alone is created
                created = await self.store.create(
                    principal.user_id, title=ref.title, metadata=ref.metadata, project_id=ref.project_id
                )
                return created, [], instructions
            draft = TurnConversation(
                id=None,
                public_id=random_id("conv"),
                user_id=principal.user_id,
                title=ref.title,
                metadata_=ref.metadata or {},
                project_id=ref.project_id,
            )
            return draft, [], instructions
        if ref.project_id is not None:
            raise APIError(
                400,
                "'conversation.project_id' is for a new conversation; move an existing one with "
                "POST /v1/conversations/{id}.",
                param="conversation.project_id",
                code="invalid_value",
            )
        found = await self.store.conversation_with_history(principal.user_id, ref.id, self.history_max_items)
        if found is None:
            raise APIError(404, f"Conversation '{ref.id}' not found.", param="conversation", code="not_found")
        conversation, history, instructions = found
        return conversation, items_to_messages(history), instructions

    async def _plain(self, prepared: Prepared) -> Response:
        response = await open_chat(self.upstream, prepared.route, prepared.upstream_body, stream=False)
        try:
            content = await response.read()
        finally:
            response.close()
        if response.status != 200:
            raise upstream_failure(prepared.route, response.status, content)
        if prepared.conversation is None:
            return Response(content, media_type="application/json")
        completion = _completion(content)
        completion["conversation"] = prepared.conversation_ref()
        if prepared.recording:
            await self.writer.commit(self._turn(prepared, completion=completion))
        return Response(_dumps(completion), media_type="application/json")

    async def _stream(self, prepared: Prepared) -> Response:
        response = await open_chat(self.upstream, prepared.route, prepared.upstream_body, stream=True)
        if response.status != 200:
            try:
                content = await response.read()
            except APIError:
                content = b""
            finally:
                response.close()
            raise upstream_failure(prepared.route, response.status, content)

        async def commit(chunks: list[bytes]) -> None:
            await self.writer.commit(self._turn(prepared, stream_bytes=chunks))

        def on_done(chunks: list[bytes] | None, outcome: RelayOutcome | None) -> None:
            # A finished turn was committed before `[DONE]`; one that could not be stored stays out.
            # What remains is a turn cut short, recorded as incomplete without anyone waiting.
            if (
                prepared.recording
                and chunks is not None
                and outcome is not None
                and outcome != "storage_failed"
            ):
                self.writer.submit(self._turn(prepared, stream_bytes=chunks, incomplete=outcome))

        event = None
        if prepared.conversation is not None:
            event = _conversation_event(prepared)
        usage = UsageWatch(lambda: prompt_chars(prepared.upstream_messages, prepared.tools))
        return StreamRelayResponse(
            response,
            usage=usage,
            conversation_event=event,
            keep_bytes=prepared.recording,
            on_done=on_done,
            commit=commit if prepared.recording else None,
        )

    @staticmethod
    def _turn(
        prepared: Prepared,
        *,
        completion: dict[str, Any] | None = None,
        stream_bytes: list[bytes] | None = None,
        incomplete: IncompleteReason | None = None,
    ) -> Turn:
        assert prepared.conversation is not None
        return Turn(
            conversation=prepared.conversation,
            inputs=prepared.inputs,
            title=prepared.title,
            completion=completion,
            stream_bytes=stream_bytes,
            incomplete_reason=incomplete,
        )


def _completion(content: bytes) -> dict[str, Any]:
    """A plain answer parsed to carry its conversation, or a 502 when it is not a JSON object."""
    try:
        completion = loads(content)
    except ValueError:
        completion = None
    if not isinstance(completion, dict):
        raise APIError(
            502, "The model answered with something other than a JSON object.", code="upstream_invalid"
        )
    return completion


def _dumps(completion: dict[str, Any]) -> bytes:
    try:
        return dumps(completion)  # an integer past 64 bits is written back exactly
    except orjson.JSONEncodeError:  # an unpaired surrogate the model sent: escaped again, as it came
        return json.dumps(completion).encode()


def _upstream_body(
    body: dict[str, Any], request: ChatRequest, route: ModelRoute, messages: list[dict[str, Any]]
) -> bytes:
    """The caller's request as the provider gets it: its own model id, our messages, usage on, and
    whatever its kind cannot take rewritten (`providers/compat.py`)."""
    upstream = {k: v for k, v in body.items() if k not in _JAN_FIELDS}
    upstream["model"] = route.upstream_id
    upstream["messages"] = messages
    if request.stream:
        upstream["stream_options"] = {**(request.stream_options or {}), "include_usage": True}
    try:
        return dumps(adapt(upstream, route.provider.compat, route.provider.name))
    except orjson.JSONEncodeError:
        # The body was read (orjson reads 1024 levels) but cannot be written (255): nothing parsed
        # from JSON fails to write otherwise. Checked here, where it costs nothing when it holds.
        raise APIError(
            400, "The JSON body nests arrays or objects more than 255 levels deep.", code="invalid_json"
        ) from None


def _with_history(messages: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not history:
        return messages
    lead = 0
    while lead < len(messages) and messages[lead].get("role") in _INSTRUCTION_ROLES:
        lead += 1
    return [*messages[:lead], *history, *messages[lead:]]


def _conversation_event(prepared: Prepared) -> bytes:
    chunk = {
        "id": "",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": prepared.public_model,
        "choices": [],
        "conversation": prepared.conversation_ref(),
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"
