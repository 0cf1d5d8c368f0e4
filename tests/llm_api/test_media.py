"""`jan_*` media placeholders are resolved through media-api's resolve contract before inference."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import openai
import pytest

from tests.harness.fake_media import FakeMedia
from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream

PLACEHOLDER = "data:image/png;jan_01hqr8v9k2x3f4g5h6j7k8m9n0"
PRESIGNED = "http://127.0.0.1:9/media/images/jan_01hqr8v9k2x3f4g5h6j7k8m9n0.png?X-Amz-Signature=abc"


def image_message(url: str) -> Any:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": url}},
        ],
    }


def test_placeholders_are_resolved_with_the_callers_credentials(
    llm_api: LlmApi, upstream: FakeUpstream, fake_media: FakeMedia
) -> None:
    fake_media.add("jan_01hqr8v9k2x3f4g5h6j7k8m9n0", PRESIGNED)
    token = llm_api.token()
    completion = llm_api.client(token).chat.completions.create(
        model=FAKE_MODEL, messages=[image_message(PLACEHOLDER)], extra_body={"conversation": {}}
    )
    assert completion.choices[0].message.content == "echo: what is this? "
    sent = upstream.requests[-1]["messages"][0]["content"][1]["image_url"]["url"]
    assert sent == PRESIGNED
    assert fake_media.authorizations == [f"Bearer {token}"]


def test_requests_without_placeholders_skip_media(
    llm_api: LlmApi, upstream: FakeUpstream, fake_media: FakeMedia
) -> None:
    llm_api.client().chat.completions.create(
        model=FAKE_MODEL, messages=[image_message("https://example.test/cat.png")]
    )
    assert fake_media.authorizations == []
    assert (
        upstream.requests[-1]["messages"][0]["content"][1]["image_url"]["url"]
        == "https://example.test/cat.png"
    )


def test_unknown_media_id_is_400(llm_api: LlmApi, upstream: FakeUpstream, fake_media: FakeMedia) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        llm_api.client().chat.completions.create(model=FAKE_MODEL, messages=[image_message(PLACEHOLDER)])
    assert caught.value.code == "media_not_found"
    assert "jan_01hqr8v9k2x3f4g5h6j7k8m9n0" in caught.value.message
    assert upstream.requests == []


@pytest.mark.parametrize("status", [500, 503])
def test_media_failure_is_502_and_nothing_goes_upstream(
    llm_api: LlmApi, upstream: FakeUpstream, fake_media: FakeMedia, status: int
) -> None:
    fake_media.status = status
    with pytest.raises(openai.APIStatusError) as caught:
        llm_api.client().chat.completions.create(
            model=FAKE_MODEL, messages=[image_message(PLACEHOLDER)], stream=True
        )
    assert caught.value.status_code == 502
    assert upstream.requests == []


def test_unreachable_media_is_502(
    wired_llm_api: Callable[..., AbstractContextManager[LlmApi]], upstream: FakeUpstream
) -> None:
    from apps.gateway.embedded import free_port

    unreachable = f"http://127.0.0.1:{free_port()}/v1/media/resolve"
    with wired_llm_api(media_resolve_url=unreachable) as api, pytest.raises(openai.APIStatusError) as caught:
        api.client().chat.completions.create(model=FAKE_MODEL, messages=[image_message(PLACEHOLDER)])
    assert caught.value.status_code == 502 and caught.value.code == "media_unavailable"
    assert upstream.requests == []


def test_slow_media_is_502_within_the_resolve_timeout(
    wired_llm_api: Callable[..., AbstractContextManager[LlmApi]],
    upstream: FakeUpstream,
    fake_media: FakeMedia,
) -> None:
    fake_media.add("jan_01hqr8v9k2x3f4g5h6j7k8m9n0", PRESIGNED)
    fake_media.delay = 5.0
    with wired_llm_api(media_resolve_timeout=0.3) as api, pytest.raises(openai.APIStatusError) as caught:
        api.client().chat.completions.create(model=FAKE_MODEL, messages=[image_message(PLACEHOLDER)])
    assert caught.value.status_code == 502 and caught.value.code == "media_timeout"
    assert upstream.requests == []


def test_the_resolve_call_carries_the_trace(
    llm_api: LlmApi, upstream: FakeUpstream, fake_media: FakeMedia
) -> None:
    fake_media.add("jan_01hqr8v9k2x3f4g5h6j7k8m9n0", PRESIGNED)
    llm_api.client().chat.completions.create(model=FAKE_MODEL, messages=[image_message(PLACEHOLDER)])
    [traceparent] = fake_media.traceparents
    assert traceparent is not None and traceparent.startswith("00-")


def test_history_keeps_placeholders_and_resolves_them_again(
    llm_api: LlmApi, upstream: FakeUpstream, fake_media: FakeMedia
) -> None:
    from tests.harness.waiting import eventually

    fake_media.add("jan_01hqr8v9k2x3f4g5h6j7k8m9n0", PRESIGNED)
    token = llm_api.token()
    client = llm_api.client(token)
    first = client.chat.completions.create(
        model=FAKE_MODEL, messages=[image_message(PLACEHOLDER)], extra_body={"conversation": {}}
    )
    conversation_id = (first.model_extra or {})["conversation"]["id"]
    with llm_api.http(token) as http:
        items = eventually(lambda: http.get(f"/v1/conversations/{conversation_id}/items").json()["data"])
    stored_image = items[-1]["content"][1]
    assert stored_image == {"type": "input_image", "image_url": PLACEHOLDER, "detail": "auto"}

    client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "and now?"}],
        extra_body={"conversation": conversation_id},
    )
    history_image = upstream.requests[-1]["messages"][0]["content"][1]
    assert history_image == {"type": "image_url", "image_url": {"url": PRESIGNED, "detail": "auto"}}
    assert len(fake_media.authorizations) == 2
