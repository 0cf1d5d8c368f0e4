"""media-api: filenames Postgres cannot store are a 400 naming the field; impossible ids are 404."""

from __future__ import annotations

import json

import httpx

from tests.harness.media import PNG, data_url


async def test_filenames_with_nul_are_refused(alice: httpx.AsyncClient) -> None:
    json_headers = {"content-type": "application/json"}
    upload = {"source": {"type": "data_url", "data_url": data_url(PNG)}, "filename": "a\x00.png"}
    response = await alice.post("/v1/media", content=json.dumps(upload).encode(), headers=json_headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "filename"
    prepare = {"mime_type": "image/png", "bytes": len(PNG), "filename": "b\x00.png"}
    response = await alice.post(
        "/v1/media/prepare-upload", content=json.dumps(prepare).encode(), headers=json_headers
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "filename"
    form = await alice.post(
        "/v1/media", files={"file": ("c.png", PNG, "image/png")}, data={"filename": "c\x00.png"}
    )
    assert form.status_code == 400, form.text
    assert form.json()["error"]["param"] == "filename"
    assert (await alice.get("/v1/media")).json()["data"] == []


async def test_impossible_ids_are_404(alice: httpx.AsyncClient) -> None:
    for path in ("/v1/media/%00", "/v1/media/jan_%00", "/v1/media/%00/content"):
        response = await alice.get(path)
        assert response.status_code == 404, response.text
    assert (await alice.delete("/v1/media/%00")).status_code == 404
    assert (await alice.post("/v1/media/%00/complete")).status_code == 404
