"""The smoke steps: each one call (or a few) through the public entry, as a user would make them.

A step returns a short detail line when it passes and raises `StepFailed` with the reason when it
does not. Steps share a `SmokeSession`, which remembers what they created so that `cleanup` can
delete exactly that and nothing else.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import orjson
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

SMOKE_TITLE = "jan-server smoke"
# file_search_query needs nothing but the platform's own database, so the tool round works in every
# stack (web search and python_exec depend on backends a stack may not configure).
SMOKE_TOOL = "file_search_query"


class StepFailed(Exception):
    """The step's check did not hold; the message says what was seen."""


class StepSkipped(Exception):
    """An earlier step that this one needs did not pass."""


@dataclass
class SmokeSession:
    http: httpx.AsyncClient
    base_url: str
    model: str | None = None
    credential: str | None = None
    conversation_id: str | None = None
    # (label, path) of every object this run created, deleted in reverse order by `cleanup`.
    created: list[tuple[str, str]] = field(default_factory=list)
    media_id: str | None = None
    media_bytes: bytes = b""

    def headers(self) -> dict[str, str]:
        if self.credential is None:
            raise StepSkipped("no credential (guest login did not pass)")
        return {"Authorization": f"Bearer {self.credential}"}

    def require_model(self) -> str:
        if self.model is None:
            raise StepSkipped("no model (the models step did not pass)")
        return self.model


def _json(response: httpx.Response, expected: int = 200) -> Any:
    if response.status_code != expected:
        raise StepFailed(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    try:
        return response.json()
    except ValueError as exc:
        raise StepFailed(f"{response.request.url.path} answered {expected} without JSON") from exc


async def health(session: SmokeSession) -> str:
    ready = await session.http.get("/readyz")
    if ready.status_code == 200:
        return "every app ready (/readyz)"
    if ready.status_code == 503:
        apps = ready.json().get("apps", {})
        down = sorted(name for name, state in apps.items() if state.get("status") != "ready")
        raise StepFailed(f"not ready: {', '.join(down) or 'unknown'}")
    # Behind Kong only /v1 is public: an unauthenticated call must reach llm-api and come back 401.
    probe = await session.http.get("/v1/models")
    if probe.status_code == 401 and "error" in probe.json():
        return "gateway and llm-api answer (/readyz not exposed)"
    raise StepFailed(
        f"/readyz answered {ready.status_code}, /v1/models without credentials {probe.status_code}"
    )


async def guest_login(session: SmokeSession) -> str:
    if session.credential is not None:
        return "using the given credential"
    body = _json(await session.http.post("/v1/auth/guest-login"), 201)
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise StepFailed("guest login returned no access_token")
    session.credential = token
    return f"guest {body.get('user', {}).get('id', '?')}"


async def models(session: SmokeSession) -> str:
    body = _json(await session.http.get("/v1/models", headers=session.headers()))
    entries = [entry for entry in body.get("data", []) if isinstance(entry, dict) and "id" in entry]
    ids = [entry["id"] for entry in entries]
    names = {name for entry in entries for name in [entry["id"], *(entry.get("aliases") or [])]}
    if not ids:
        raise StepFailed("no models are served")
    if session.model is None:
        session.model = ids[0]
    elif session.model not in names:
        raise StepFailed(f"model {session.model!r} is not served (have: {', '.join(ids)})")
    return f"{len(ids)} model(s); using {session.model}"


async def chat(session: SmokeSession) -> str:
    payload = {
        "model": session.require_model(),
        "messages": [{"role": "user", "content": "Reply with one short friendly sentence."}],
        "max_tokens": 32,
        "conversation": {"title": SMOKE_TITLE},
    }
    body = _json(await session.http.post("/v1/chat/completions", json=payload, headers=session.headers()))
    conversation = body.get("conversation") or {}
    if not body.get("choices") or not isinstance(conversation.get("id"), str):
        raise StepFailed(f"no choices or no conversation id in the reply: {str(body)[:300]}")
    session.conversation_id = conversation["id"]
    session.created.append(("conversation", f"/v1/conversations/{conversation['id']}"))
    return f"conversation {conversation['id']}"


async def chat_stream(session: SmokeSession) -> str:
    if session.conversation_id is None:
        raise StepSkipped("no conversation (the chat step did not pass)")
    payload = {
        "model": session.require_model(),
        "messages": [{"role": "user", "content": "And one more."}],
        "max_tokens": 32,
        "stream": True,
        "stream_options": {"include_usage": True},
        "conversation": session.conversation_id,
    }
    chunks: list[dict[str, Any]] = []
    done = False
    async with session.http.stream(
        "POST", "/v1/chat/completions", json=payload, headers=session.headers()
    ) as response:
        if response.status_code != 200:
            raise StepFailed(f"answered {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            chunk = orjson.loads(data)
            if "error" in chunk:
                raise StepFailed(f"the stream carried an error: {chunk['error']}")
            chunks.append(chunk)
    if not done:
        raise StepFailed(f"the stream ended without [DONE] after {len(chunks)} chunks")
    if not any(chunk.get("usage") for chunk in chunks):
        raise StepFailed("no usage chunk although include_usage was asked for")
    return f"{len(chunks)} chunks, usage reported"


async def conversation_items(session: SmokeSession) -> str:
    if session.conversation_id is None:
        raise StepSkipped("no conversation (the chat step did not pass)")
    path = f"/v1/conversations/{session.conversation_id}/items"
    body = _json(await session.http.get(path, params={"order": "asc"}, headers=session.headers()))
    roles = [item.get("role") for item in body.get("data", [])]
    # Two turns were acknowledged, so both must be stored: user, assistant, user, assistant.
    if roles.count("user") < 2 or roles.count("assistant") < 2:
        raise StepFailed(f"expected both turns stored, found roles {roles}")
    return f"{len(roles)} items stored"


async def response_with_tool(session: SmokeSession) -> str:
    payload = {
        "model": session.require_model(),
        "input": "Search my documents for 'jan-server smoke test' with the file search tool.",
        "tools": [{"type": "mcp", "server_label": "jan", "allowed_tools": [SMOKE_TOOL]}],
        "tool_choice": "required",
        "max_output_tokens": 64,
    }
    body = _json(await session.http.post("/v1/responses", json=payload, headers=session.headers()))
    if isinstance(body.get("id"), str):
        session.created.append(("response", f"/v1/responses/{body['id']}"))
    conversation = (body.get("conversation") or {}).get("id")
    if isinstance(conversation, str) and conversation != session.conversation_id:
        session.created.append(("conversation", f"/v1/conversations/{conversation}"))
    calls = [item for item in body.get("output", []) if item.get("type") == "mcp_call"]
    if body.get("status") != "completed":
        raise StepFailed(
            f"status {body.get('status')!r}: {body.get('error') or body.get('incomplete_details')}"
        )
    if not calls:
        raise StepFailed("the response completed without running an MCP tool")
    failed = [call for call in calls if call.get("error")]
    if failed:
        raise StepFailed(f"the tool call failed: {failed[0]['error']}")
    return f"{len(calls)} tool call(s), {body.get('id')}"


def unique_png() -> bytes:
    """A valid 1x1 PNG whose colour is random, so the upload is never deduplicated into older data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + os.urandom(3))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


async def media_upload(session: SmokeSession) -> str:
    session.media_bytes = unique_png()
    data_url = "data:image/png;base64," + base64.b64encode(session.media_bytes).decode()
    payload = {"source": {"type": "data_url", "data_url": data_url}}
    body = _json(await session.http.post("/v1/media", json=payload, headers=session.headers()))
    media_id = body.get("id")
    if not isinstance(media_id, str) or not media_id.startswith("jan_"):
        raise StepFailed(f"no jan_ id in {str(body)[:200]}")
    session.media_id = media_id
    session.created.append(("media", f"/v1/media/{media_id}"))
    return media_id


async def media_resolve(session: SmokeSession) -> str:
    if session.media_id is None:
        raise StepSkipped("nothing uploaded (the media upload step did not pass)")
    placeholder = f"data:image/png;{session.media_id}"
    payload = {"payload": {"image_url": {"url": placeholder}}}
    body = _json(await session.http.post("/v1/media/resolve", json=payload, headers=session.headers()))
    url = (body.get("payload") or {}).get("image_url", {}).get("url", "")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise StepFailed(f"the placeholder was not replaced by a URL: {str(body)[:200]}")
    # The presigned URL goes straight to object storage, as a browser or a model server would use it.
    async with httpx.AsyncClient(timeout=session.http.timeout) as direct:
        fetched = await direct.get(url)
    if fetched.status_code != 200 or fetched.content != session.media_bytes:
        raise StepFailed(f"the presigned URL answered {fetched.status_code} with other bytes")
    return "presigned URL serves the uploaded bytes"


async def mcp_tools_list(session: SmokeSession) -> str:
    timeout = session.http.timeout.read or 30.0
    async with (
        httpx2.AsyncClient(headers=session.headers(), timeout=timeout) as http,
        streamable_http_client(f"{session.base_url}/v1/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        listed = await client.list_tools()
    names = sorted(tool.name for tool in listed.tools)
    if SMOKE_TOOL not in names:
        raise StepFailed(f"{SMOKE_TOOL} is not offered (tools: {', '.join(names) or 'none'})")
    return f"{len(names)} tools"


async def cleanup(session: SmokeSession) -> str:
    failures: list[str] = []
    for label, path in reversed(session.created):
        response = await session.http.delete(path, headers=session.headers())
        # 404: already gone (deleting a conversation may take its response with it).
        if response.status_code not in (200, 204, 404):
            failures.append(f"{label} {path}: {response.status_code}")
    if failures:
        raise StepFailed("could not delete " + "; ".join(failures))
    return f"deleted {len(session.created)} object(s)"
