"""Bad input always gets a clear 4xx in the OpenAI error envelope."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.harness.media import JPEG, MAX_BYTES, PNG, data_url


async def upload_data_url(client: httpx.AsyncClient, value: str) -> httpx.Response:
    return await client.post("/v1/media", json={"source": {"type": "data_url", "data_url": value}})


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


async def test_not_base64(alice: httpx.AsyncClient) -> None:
    assert_error(await upload_data_url(alice, "data:image/png;base64,@@not base64!!"), 400, "invalid_base64")


async def test_not_a_data_url(alice: httpx.AsyncClient) -> None:
    assert_error(await upload_data_url(alice, "image/png;base64,AAAA"), 400, "invalid_data_url")
    assert_error(await upload_data_url(alice, "data:image/png,rawtext"), 400, "invalid_data_url")


async def test_wrong_declared_type(alice: httpx.AsyncClient) -> None:
    assert_error(await upload_data_url(alice, data_url(JPEG, "image/png")), 400, "content_type_mismatch")
    wrong_part = await alice.post("/v1/media", files={"file": ("a.png", JPEG, "image/png")})
    assert_error(wrong_part, 400, "content_type_mismatch")


async def test_empty(alice: httpx.AsyncClient) -> None:
    assert_error(await upload_data_url(alice, "data:image/png;base64,"), 400, "empty_media")
    assert_error(
        await alice.post("/v1/media", files={"file": ("e.png", b"", "image/png")}), 400, "empty_media"
    )


async def test_one_byte_over_the_limit(alice: httpx.AsyncClient) -> None:
    exact = PNG + b"\x00" * (MAX_BYTES - len(PNG))
    assert (await upload_data_url(alice, data_url(exact))).status_code == 200
    over = exact + b"\x01"
    assert_error(await upload_data_url(alice, data_url(over)), 413, "too_large")
    assert_error(
        await alice.post("/v1/media", files={"file": ("o.png", over, "image/png")}), 413, "too_large"
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>",
        b"  <svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        b"MZ\x90\x00\x03\x00\x00\x00" + PNG,  # a Windows executable carrying a PNG inside
        b"\x7fELF\x02\x01\x01" + PNG,
        b"PK\x03\x04" + b"\x00" * 26 + JPEG,  # a zip archive with a JPEG inside
    ],
)
async def test_polyglot_whose_bytes_are_not_an_allowed_type(alice: httpx.AsyncClient, payload: bytes) -> None:
    encoded = base64.b64encode(payload).decode()
    assert_error(
        await upload_data_url(alice, f"data:image/png;base64,{encoded}"), 415, "unsupported_media_type"
    )


async def test_malformed_bodies(alice: httpx.AsyncClient) -> None:
    assert_error(
        await alice.post("/v1/media", content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "invalid_json",
    )
    unknown = await alice.post("/v1/media", json={"source": {"type": "ftp", "url": "x"}})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"].startswith("source")
    assert_error(
        await alice.post("/v1/media", content=b"raw", headers={"Content-Type": "image/png"}),
        415,
        "unsupported_content_type",
    )
    no_file = await alice.post(
        "/v1/media", data={"filename": "x"}, files={"other": ("a", b"x", "text/plain")}
    )
    assert_error(no_file, 400, "missing_file")


async def test_huge_remote_body(alice: httpx.AsyncClient, site: int) -> None:
    source = {"type": "remote_url", "url": f"http://public.test:{site}/big"}
    assert_error(await alice.post("/v1/media", json={"source": source}), 413, "too_large")


async def test_slow_remote_server(alice: httpx.AsyncClient, site: int) -> None:
    source = {"type": "remote_url", "url": f"http://public.test:{site}/slow"}
    assert_error(await alice.post("/v1/media", json={"source": source}), 400, "remote_timeout")


async def test_failing_remote_server(alice: httpx.AsyncClient, site: int) -> None:
    source = {"type": "remote_url", "url": f"http://public.test:{site}/missing"}
    assert_error(await alice.post("/v1/media", json={"source": source}), 400, "remote_fetch_failed")
