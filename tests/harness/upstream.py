"""A fake OpenAI-compatible model server on a real loopback port.

By default it echoes the last user message. Tests script the next replies with `enqueue(Reply(...))`:
plain text or chunks at a chosen pace, tool calls, an HTTP error, a stall, or a connection dropped
mid-stream. Every request body it receives is kept in `requests` for assertions.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class Reply:
    """One scripted upstream answer."""

    content: str | list[str] = "ok"
    tool_calls: list[dict[str, Any]] | None = None
    reasoning: str | None = None
    status: int = 200
    error_body: dict[str, Any] | None = None
    first_byte_delay: float = 0.0
    chunk_interval: float = 0.0
    stall_after_chunks: int | None = None
    drop_after_chunks: int | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    linger_after_done: float = 0.0  # keep the connection open this long after `data: [DONE]`
    omit_usage: bool = False  # ignore `stream_options.include_usage`, as llama-cpp-python's server does
    raw_body: bytes | None = None  # a plain answer sent as exactly these bytes (odd or malformed ones)
    # Answer only once this is set (a test holds requests in flight while it breaks something).
    hold: threading.Event | None = None


class DroppedConnection(Exception):
    """Raised inside the streaming body so the server aborts the connection."""


@dataclass
class FakeUpstream:
    models: list[str] = field(default_factory=lambda: ["fake-model", "fake-model-2"])
    api_key: str | None = None
    # Extra fields of every `/models` entry, as some servers add them (vLLM's `max_model_len`).
    listing_extra: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    raw_requests: list[bytes] = field(default_factory=list)  # the same bodies as they came
    headers: list[dict[str, str]] = field(default_factory=list)
    _queue: deque[Reply] = field(default_factory=deque)
    _holds: list[threading.Event] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.app = FastAPI()
        self.app.add_api_route("/v1/models", self._models, methods=["GET"])
        self.app.add_api_route("/v1/chat/completions", self._chat, methods=["POST"])
        self.app.add_api_route("/v1/embeddings", self._embeddings, methods=["POST"])

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def enqueue(self, *replies: Reply) -> None:
        self._queue.extend(replies)
        self._holds.extend(reply.hold for reply in replies if reply.hold is not None)

    def reset(self) -> None:
        # A test that failed before letting its held replies go would leave them blocking the
        # server's worker threads for a minute, into the next tests.
        for hold in self._holds:
            hold.set()
        self._holds.clear()
        self._queue.clear()
        self.requests.clear()
        self.raw_requests.clear()
        self.headers.clear()

    def _authorized(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _models(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake", **self.listing_extra}
            for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _embeddings(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": _hash_vector(str(text), 384)}
            for i, text in enumerate(inputs)
        ]
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        return JSONResponse({"object": "list", "data": data, "model": body.get("model"), "usage": usage})

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        body = orjson.loads(raw)
        self.requests.append(body)
        self.raw_requests.append(raw)
        self.headers.append(dict(request.headers))
        if not self._authorized(request):
            return JSONResponse({"error": {"message": "bad key", "type": "auth"}}, status_code=401)
        reply = self._queue.popleft() if self._queue else Reply(content=f"echo: {_last_user_text(body)}")
        if reply.hold is not None:
            await asyncio.to_thread(reply.hold.wait, 60)
        if reply.first_byte_delay:
            await asyncio.sleep(reply.first_byte_delay)
        if reply.status != 200:
            error = reply.error_body or {"error": {"message": "upstream failure", "type": "server_error"}}
            return JSONResponse(error, status_code=reply.status)
        if reply.raw_body is not None:
            return Response(reply.raw_body, media_type="application/json")
        completion_id = f"chatcmpl-{next(self._ids)}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(reply, body, completion_id, include_usage), media_type="text/event-stream"
            )
        return JSONResponse(_completion(reply, body, completion_id))

    async def _stream(
        self, reply: Reply, body: dict[str, Any], cid: str, include_usage: bool
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body["model"]}
        chunks: list[dict[str, Any]] = [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ]
        if reply.reasoning:
            chunks.append(
                {"index": 0, "delta": {"reasoning_content": reply.reasoning}, "finish_reason": None}
            )
        for piece in _pieces(reply.content):
            chunks.append({"index": 0, "delta": {"content": piece}, "finish_reason": None})
        for index, call in enumerate(reply.tool_calls or []):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            chunks.append(
                {
                    "index": 0,
                    "finish_reason": None,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": arguments[:half]},
                            }
                        ]
                    },
                }
            )
            chunks.append(
                {
                    "index": 0,
                    "finish_reason": None,
                    "delta": {"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]},
                }
            )
        chunks.append({"index": 0, "delta": {}, "finish_reason": _finish(reply)})
        for number, choice in enumerate(chunks):
            if reply.drop_after_chunks is not None and number >= reply.drop_after_chunks:
                raise DroppedConnection
            if reply.stall_after_chunks is not None and number >= reply.stall_after_chunks:
                await asyncio.sleep(3600)
            if reply.chunk_interval and number:
                await asyncio.sleep(reply.chunk_interval)
            yield b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"
        if include_usage and not reply.omit_usage:
            yield b"data: " + _encode({**base, "choices": [], "usage": _usage(reply, body)}) + b"\n\n"
        yield b"data: [DONE]\n\n"
        if reply.linger_after_done:
            await asyncio.sleep(reply.linger_after_done)


def _encode(chunk: dict[str, Any]) -> bytes:
    """orjson's JSON, or the standard library's for a chunk holding an integer past 64 bits."""
    try:
        return orjson.dumps(chunk)
    except TypeError:
        return json.dumps(chunk, separators=(",", ":")).encode()


def _pieces(content: str | list[str]) -> list[str]:
    if isinstance(content, list):
        return content
    words = content.split(" ")
    return [word if i == 0 else f" {word}" for i, word in enumerate(words)] if content else []


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _usage(reply: Reply, body: dict[str, Any]) -> dict[str, int]:
    if reply.usage:
        return reply.usage
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion = len(_pieces(reply.content))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(reply: Reply, body: dict[str, Any], cid: str) -> dict[str, Any]:
    text = "".join(reply.content) if isinstance(reply.content, list) else reply.content
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if not reply.tool_calls else (text or None),
    }
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply), "logprobs": None}],
        "usage": _usage(reply, body),
    }


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _hash_vector(text: str, dims: int) -> list[float]:
    """A deterministic bag-of-words vector, so similar texts get similar embeddings."""
    vector = [0.0] * dims
    for word in text.lower().split():
        digest = hashlib.sha256(word.strip(".,!?").encode()).digest()
        vector[int.from_bytes(digest[:4], "big") % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
