"""Data flows 1 and 3 together: a `jan_…` media id in a chat request reaches the model as a presigned URL."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.local_apps import LOCAL_AUDIENCE
from tests.harness.media import data_url, unique_png
from tests.harness.server import serve_local
from tests.harness.upstream import FakeUpstream
from tests.harness.waiting import CLIENT_TIMEOUT


def test_placeholder_is_resolved_through_the_real_media_api(
    database_url: str, s3_endpoint: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    with serve_local(database_url, s3_endpoint, tmp_path, model_url=upstream.base_url) as (url, env):
        issuer = LocalIssuer.from_key_file(tmp_path / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE)
        owner, stranger = issuer.mint("media-owner"), issuer.mint("media-stranger")
        png = unique_png()
        created = httpx.post(
            f"{url}/v1/media",
            json={"source": {"type": "data_url", "data_url": data_url(png)}},
            headers={"Authorization": f"Bearer {owner}"},
            timeout=CLIENT_TIMEOUT,
        )
        assert created.status_code == 200, created.text
        placeholder = f"data:image/png;{created.json()['id']}"
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": placeholder}},
                ],
            }
        ]

        client = openai.OpenAI(base_url=f"{url}/v1", api_key=owner, max_retries=0)
        model = next(m.id for m in client.models.list() if m.id.endswith("fake-model"))
        client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
        sent = upstream.requests[-1]["messages"][-1]["content"][1]["image_url"]["url"]
        assert "jan_" not in sent and sent.startswith("http")
        assert httpx.get(sent, timeout=CLIENT_TIMEOUT).content == png

        intruder = openai.OpenAI(base_url=f"{url}/v1", api_key=stranger, max_retries=0)
        calls = len(upstream.requests)
        with pytest.raises(openai.BadRequestError) as refused:
            intruder.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
        assert created.json()["id"] in str(refused.value)
        assert len(upstream.requests) == calls  # the placeholder never reached the model
