"""`GetPresigner` signs the very URL boto3 would, at a fraction of its cost (services/presign.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import botocore.auth
import pytest
from pydantic import SecretStr

from apps.media_api.services.presign import PROBE_KEY, GetPresigner
from apps.media_api.services.storage import ObjectStore, _client
from apps.media_api.settings import MediaApiSettings

INSTANT = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)
LATER = datetime(2027, 1, 1, 0, 0, 3, tzinfo=UTC)  # another day: another signing key


def settings(**overrides: Any) -> MediaApiSettings:
    values: dict[str, Any] = {
        "media_s3_bucket": "jan-media",
        "media_s3_access_key": SecretStr("AKIDEXAMPLE"),
        "media_s3_secret_key": SecretStr("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        **overrides,
    }
    return MediaApiSettings(**values)


def boto3_url(config: MediaApiSettings, key: str, at: datetime, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at.replace(tzinfo=None))
    client = _client(config, config.media_s3_endpoint)
    try:
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": config.media_s3_bucket, "Key": key}, ExpiresIn=300
        )
    finally:
        client.close()


@pytest.mark.parametrize(
    "overrides",
    [
        {"media_s3_endpoint": "http://127.0.0.1:9000", "media_s3_use_path_style": True},
        {"media_s3_endpoint": "https://minio.example.com:8443", "media_s3_use_path_style": True},
        {"media_s3_endpoint": "https://s3.example.com", "media_s3_use_path_style": False},
        {"media_s3_endpoint": None, "media_s3_region": "eu-central-1"},  # AWS itself
    ],
)
def test_the_same_url_as_boto3(overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    config = settings(**overrides)
    secret = config.media_s3_secret_key
    assert secret is not None
    probe = boto3_url(config, PROBE_KEY, INSTANT, monkeypatch)
    clock = iter([INSTANT, INSTANT, LATER])
    presigner = GetPresigner.from_probe(
        probe, secret_key=secret.get_secret_value(), clock=lambda: next(clock)
    )
    assert presigner is not None
    for key, at in (("media/255611645676486656.png", INSTANT), ("media/1.jpeg", INSTANT), ("a/b-c_d", LATER)):
        assert GetPresigner.handles(key)
        assert presigner.presign_get(key, 300) == boto3_url(config, key, at, monkeypatch)


def test_what_it_does_not_reproduce_is_left_to_boto3() -> None:
    for key in ("media/a b.png", "media/../x.png", "media//x.png", "media/é.png", ".hidden", "k?x=1"):
        assert not GetPresigner.handles(key)
    token = (
        "https://s3.example.com/b/jan-presign-probe?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AK%2F20261231%2Fus-west-2%2Fs3%2Faws4_request&X-Amz-Date=20261231T000000Z"
        "&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Security-Token=t&X-Amz-Signature=00"
    )
    assert GetPresigner.from_probe(token, secret_key="s") is None


def test_the_store_signs_its_own_keys_itself_and_others_with_boto3() -> None:
    store = ObjectStore(settings(media_s3_endpoint="http://127.0.0.1:9000", media_s3_use_path_style=True))
    try:
        assert store._get_presigner is not None
        assert "X-Amz-Signature=" in store.presign_get("media/1.png")
        assert "media/a%20b.png?" in store.presign_get("media/a b.png")
    finally:
        store.close()
    keyless = ObjectStore(settings(media_s3_access_key=None, media_s3_secret_key=None))
    try:
        assert keyless._get_presigner is None  # boto3's credential chain may refresh: boto3 signs
    finally:
        keyless.close()
