"""Remote uploads cannot reach the private network; the allow-list setting opens it for tests."""

from __future__ import annotations

import httpx
import pytest

from tests.harness.media import PNG


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/image.png",
        "http://localhost/image.png",
        "http://10.0.0.1/image.png",
        "http://172.16.0.1/image.png",
        "http://192.168.1.1/image.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/image.png",
        "http://[::ffff:127.0.0.1]/image.png",
        "http://evil.test/image.png",  # a host name that resolves to loopback
        "ftp://public.test/image.png",
    ],
)
async def test_private_targets_are_refused(alice: httpx.AsyncClient, url: str) -> None:
    response = await alice.post("/v1/media", json={"source": {"type": "remote_url", "url": url}})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unsafe_url" and error["param"] == "source.url"


async def test_redirect_to_loopback_is_refused(alice: httpx.AsyncClient, site: int) -> None:
    url = f"http://public.test:{site}/to-loopback?port={site}"
    response = await alice.post("/v1/media", json={"source": {"type": "remote_url", "url": url}})
    assert response.status_code == 400 and "non-public" in response.json()["error"]["message"]


async def test_allow_list_lets_a_loopback_server_through(
    alice: httpx.AsyncClient, alt: httpx.AsyncClient, site: int
) -> None:
    url = f"http://127.0.0.1:{site}/image.png"
    refused = await alice.post("/v1/media", json={"source": {"type": "remote_url", "url": url}})
    assert refused.status_code == 400
    allowed = await alt.post("/v1/media", json={"source": {"type": "remote_url", "url": url}})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["bytes"] == len(PNG)
