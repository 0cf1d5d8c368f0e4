"""The fake model upstream behaves as scripted (the other suites rely on it)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.harness.upstream import FakeUpstream, Reply


def client(upstream: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.base_url, api_key="k", max_retries=0)


def test_echo_and_usage(upstream: FakeUpstream) -> None:
    completion = client(upstream).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi there"}]
    )
    assert completion.choices[0].message.content == "echo: hi there"
    assert completion.usage is not None and completion.usage.total_tokens > 0


def test_paced_stream_with_tool_calls(upstream: FakeUpstream) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    upstream.enqueue(Reply(content="a b c", tool_calls=[call], chunk_interval=0.05))
    started = time.monotonic()
    stream = client(upstream).chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert time.monotonic() - started >= 0.2
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    arguments = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in (c.choices[0].delta.tool_calls or [])
        if tc.function
    )
    assert text == "a b c" and arguments == '{"a": 1}'
    assert chunks[-1].usage is not None


def test_error_and_drop(upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=503), Reply(content="one two three", drop_after_chunks=2))
    with pytest.raises(openai.InternalServerError):
        client(upstream).chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}]
        )
    stream = client(upstream).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        list(stream)


def test_stall_is_observable_as_a_read_timeout(upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(content="one two", stall_after_chunks=1))
    with httpx.stream(
        "POST",
        f"{upstream.base_url}/chat/completions",
        timeout=httpx.Timeout(5, read=0.3),
        json={"model": "fake-model", "messages": [], "stream": True},
    ) as response:
        with pytest.raises(httpx.ReadTimeout):
            for _ in response.iter_raw():
                pass
