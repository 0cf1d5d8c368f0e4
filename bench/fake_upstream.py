"""The benchmark's upstream: a minimal OpenAI-compatible server with fixed, known timing.

Plain requests are answered at once with a fixed completion. Streams send `max_tokens` content chunks
(default 8), the first at once and the rest 5 ms apart (model `fake-model`, 200 tokens/s) or 20 ms
apart (`fake-model-50tps`, 50 tokens/s, a typical GPU decode speed per stream), then a usage chunk
when asked for and `data: [DONE]`. Raw ASGI, so its own cost is small and identical for every arm.

Run: `python -m bench.fake_upstream <port>`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson
import uvicorn

INTERVALS = {"fake-model": 0.005, "fake-model-50tps": 0.020}
MODELS = orjson.dumps(
    {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "bench"} for m in INTERVALS],
    }
)


def _completion(model: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the bench."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        }
    )


async def _json(send: Any, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Any, request: dict[str, Any]) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
    )
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request["model"],
    }
    chunks = int(request.get("max_tokens") or 8)
    interval = INTERVALS.get(request["model"], 0.005)
    for number in range(chunks):
        if number:
            await asyncio.sleep(interval)
        delta = {"role": "assistant", "content": "tok "} if number == 0 else {"content": "tok "}
        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if number == chunks - 1 else None}
        await send(
            {
                "type": "http.response.body",
                "body": b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n",
                "more_body": True,
            }
        )
    if (request.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks}
        await send(
            {
                "type": "http.response.body",
                "body": b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n",
                "more_body": True,
            }
        )
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"].endswith("/models"):
        await _json(send, MODELS)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = orjson.loads(body)
    if request.get("stream"):
        await _stream(send, request)
    else:
        await _json(send, _completion(request["model"]))


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
