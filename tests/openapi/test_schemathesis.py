"""Schemathesis over the merged OpenAPI document of the four apps, served as `make dev` serves them.

The fuzzer (a third-party tool: it knows nothing of our code) generates valid and invalid requests
for every operation from the document, sends them with a valid token, and checks each answer:
no 5xx, no status the document does not list, bodies, content types and headers as documented.
Examples per operation are bounded so the run stays within a couple of minutes. Path ids are
mostly those of objects the fuzzer's user owns, so operations get past their 404.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.local_apps import LOCAL_AUDIENCE
from tests.harness.server import serve_local
from tests.harness.upstream import FakeUpstream

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = int(os.environ.get("JAN_FUZZ_EXAMPLES", "8"))
# Known failures another change is fixing, each with its reason and an expiry date after which it
# counts again (schemathesis' baseline file); empty once they are fixed.
ACCEPTED = Path(__file__).with_name("accepted-failures.json")


@pytest.fixture(scope="module")
def local_api(
    database_url: str,
    s3_endpoint: str,
    upstream_server: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    with serve_local(database_url, s3_endpoint, data_dir, model_url=upstream_server.base_url) as (url, env):
        issuer = LocalIssuer.from_key_file(Path(data_dir) / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE)
        yield url, issuer.mint("schemathesis")


def existing_ids(url: str, token: str) -> dict[str, list[str]]:
    """Objects the fuzzer's user owns, so that operations on an id reach more than their 404."""
    headers = {"Authorization": f"Bearer {token}"}
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        message = {"type": "message", "role": "user", "content": "hello"}
        project = http.post("/v1/projects", json={"name": "fuzz", "instructions": "Be brief."}).json()
        conversation = http.post(
            "/v1/conversations", json={"items": [message], "project_id": project["id"]}
        ).json()
        items = http.get(f"/v1/conversations/{conversation['id']}/items").json()["data"]
        source = {"type": "data_url", "data_url": f"data:image/png;base64,{png}"}
        media = http.post("/v1/media", json={"source": source}).json()
        response = http.post("/v1/responses", json={"model": "local/fake-model", "input": "hi", "tools": []})
    return {
        "conversation_id": [conversation["id"]],
        "project_id": [project["id"]],
        "item_id": [item["id"] for item in items],
        "media_id": [media["id"]],
        "response_id": [response.json()["id"]],
    }


def write_config(path: Path, ids: dict[str, list[str]]) -> Path:
    """Path parameters come from these ids most of the time, and are generated the rest of it."""
    lines: list[str] = []
    for name, values in ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.7 }}' for name in ids]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_schemathesis(
    url: str, token: str, report_dir: Path, config: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "1",
        "--no-shrink",
        "--generation-database",
        "none",
        # One worker: hypothesis parses lambda sources with `ast` and CPython 3.11.7 can fail that from
        # two threads at once ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Bearer {token}",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report_dir),
        *extra,
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    # In the report directory: schemathesis keeps a crash cache under the working directory.
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, check=False, cwd=report_dir
    )


def test_every_documented_operation_survives_the_fuzzer(local_api: tuple[str, str], tmp_path: Path) -> None:
    url, token = local_api
    config = write_config(tmp_path / "schemathesis.toml", existing_ids(url, token))
    result = run_schemathesis(url, token, tmp_path, config, "--baseline", str(ACCEPTED))
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
