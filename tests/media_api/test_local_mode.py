"""`make dev` wiring: media-api behind the local gateway, on the embedded S3 with its bucket created."""

from __future__ import annotations

from pathlib import Path

import httpx

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.local_apps import LOCAL_AUDIENCE
from tests.harness.media import data_url, unique_png
from tests.harness.server import serve_local
from tests.harness.waiting import CLIENT_TIMEOUT


def test_upload_and_resolve_through_the_local_gateway(
    database_url: str, s3_endpoint: str, tmp_path: Path
) -> None:
    with serve_local(database_url, s3_endpoint, tmp_path) as (url, env):
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
        assert ready["apps"]["media-api"]["checks"]["s3"]["status"] == "ok"
        issuer = LocalIssuer.from_key_file(tmp_path / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE)
        headers = {"Authorization": f"Bearer {issuer.mint('local-user')}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            png = unique_png()
            created = client.post(
                "/v1/media", json={"source": {"type": "data_url", "data_url": data_url(png)}}
            )
            assert created.status_code == 200, created.text
            placeholder = f"data:image/png;{created.json()['id']}"
            resolved = client.post("/v1/media/resolve", json={"payload": {"url": placeholder}})
            assert resolved.status_code == 200, resolved.text
        assert httpx.get(resolved.json()["payload"]["url"], timeout=CLIENT_TIMEOUT).content == png
