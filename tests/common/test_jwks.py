"""The JWKS verifier, one rule per test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from apps.common.auth.jwks import JWKSVerifier, TokenError
from apps.common.auth.principal import Authenticator, Principal
from apps.common.errors import APIError
from tests.harness.issuer import TestIssuer


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield http


@pytest.fixture
def fresh_issuer(issuer: TestIssuer) -> Iterator[TestIssuer]:
    """The session issuer with one fresh published key; reachable again afterwards."""
    issuer.rotate(keep_old=False)
    issuer.down = False
    yield issuer
    issuer.down = False


def make_verifier(issuer: TestIssuer, client: httpx.AsyncClient, **kwargs: Any) -> JWKSVerifier:
    options: dict[str, Any] = {"min_refetch_seconds": 0.0}
    options.update(kwargs)
    return JWKSVerifier(
        jwks_url=issuer.jwks_url, issuer=issuer.issuer, audience=issuer.audience, client=client, **options
    )


async def test_valid_rs256_token_is_accepted(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    claims = await make_verifier(fresh_issuer, client).verify(fresh_issuer.mint("alice"))
    assert claims["sub"] == "alice"


async def test_valid_es256_token_is_accepted(
    fresh_issuer: TestIssuer, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": "ec-1", "use": "sig", "alg": "ES256"})
    original = fresh_issuer.current.jwks
    monkeypatch.setattr(fresh_issuer.current, "jwks", lambda: {"keys": [*original()["keys"], jwk]})
    now = int(time.time())
    token = jwt.encode(
        {"iss": fresh_issuer.issuer, "aud": fresh_issuer.audience, "sub": "bob", "exp": now + 60},
        key,
        algorithm="ES256",
        headers={"kid": "ec-1"},
    )
    claims = await make_verifier(fresh_issuer, client).verify(token)
    assert claims["sub"] == "bob"


async def test_expired_token_is_refused(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    with pytest.raises(TokenError, match="expired"):
        await make_verifier(fresh_issuer, client).verify(fresh_issuer.mint_expired())


async def test_clock_skew_is_tolerated(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    token = fresh_issuer.mint("skewed", now=time.time() - 630, ttl_seconds=600)  # expired 30 s ago
    assert (await make_verifier(fresh_issuer, client, leeway_seconds=60).verify(token))["sub"] == "skewed"
    with pytest.raises(TokenError, match="expired"):
        await make_verifier(fresh_issuer, client, leeway_seconds=10).verify(token)


async def test_not_yet_valid_token_is_refused(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    token = fresh_issuer.mint("future", now=time.time() + 600)
    with pytest.raises(TokenError, match="not valid yet"):
        await make_verifier(fresh_issuer, client).verify(token)


async def test_wrong_issuer_is_refused(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    with pytest.raises(TokenError, match="issuer"):
        await make_verifier(fresh_issuer, client).verify(fresh_issuer.mint_wrong_issuer())


async def test_wrong_audience_is_refused(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    with pytest.raises(TokenError, match="audience"):
        await make_verifier(fresh_issuer, client).verify(fresh_issuer.mint_wrong_audience())


async def test_alg_none_is_refused(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    with pytest.raises(TokenError, match="not allowed"):
        await make_verifier(fresh_issuer, client).verify(fresh_issuer.mint_unsigned())


async def test_hs256_signed_with_the_public_key_is_refused(
    fresh_issuer: TestIssuer, client: httpx.AsyncClient
) -> None:
    public_pem = fresh_issuer.current._private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {
        "iss": fresh_issuer.issuer,
        "aud": fresh_issuer.audience,
        "sub": "mallory",
        "exp": int(time.time()) + 60,
    }
    # PyJWT itself refuses PEM keys as HMAC secrets, so sign by hand as an attacker would.
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": fresh_issuer.current.kid}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    with pytest.raises(TokenError, match="not allowed"):
        await make_verifier(fresh_issuer, client).verify(f"{header}.{payload}.{signature}")


async def test_algorithm_outside_the_allowed_list_is_refused(
    fresh_issuer: TestIssuer, client: httpx.AsyncClient
) -> None:
    verifier = make_verifier(fresh_issuer, client, algorithms=("ES256",))
    with pytest.raises(TokenError, match="not allowed"):
        await verifier.verify(fresh_issuer.mint())


async def test_tampered_signature_is_refused(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    token = fresh_issuer.mint()
    head, _, signature = token.split(".")
    forged_body = jwt.utils.base64url_encode(b'{"sub":"admin"}').decode()
    with pytest.raises(TokenError):
        await make_verifier(fresh_issuer, client).verify(f"{head}.{forged_body}.{signature}")


async def test_garbage_is_refused(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    with pytest.raises(TokenError, match="malformed"):
        await make_verifier(fresh_issuer, client).verify("not-a-jwt")


async def test_rotation_unknown_kid_triggers_one_refetch(
    fresh_issuer: TestIssuer, client: httpx.AsyncClient
) -> None:
    verifier = make_verifier(fresh_issuer, client)
    await verifier.verify(fresh_issuer.mint())
    fetches = fresh_issuer.fetches
    fresh_issuer.rotate()
    assert (await verifier.verify(fresh_issuer.mint("rotated")))["sub"] == "rotated"
    assert fresh_issuer.fetches == fetches + 1
    await verifier.verify(fresh_issuer.mint("again"))
    assert fresh_issuer.fetches == fetches + 1  # the new key is cached now


async def test_unknown_kid_refetch_is_rate_limited(
    fresh_issuer: TestIssuer, client: httpx.AsyncClient
) -> None:
    verifier = make_verifier(fresh_issuer, client, min_refetch_seconds=60.0)
    await verifier.verify(fresh_issuer.mint())
    stranger = TestIssuer(fresh_issuer.issuer, fresh_issuer.audience)
    fetches = fresh_issuer.fetches
    for _ in range(3):
        with pytest.raises(TokenError, match="unknown"):
            await verifier.verify(stranger.mint())
    assert fresh_issuer.fetches == fetches  # the first fetch was moments ago: no refetch storm


async def test_jwks_outage_keeps_cached_keys(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    verifier = make_verifier(fresh_issuer, client, cache_seconds=0.01)
    await verifier.verify(fresh_issuer.mint())
    fresh_issuer.down = True
    await asyncio.sleep(0.05)  # the cache is now stale, so the verifier tries (and fails) to refresh
    fetches = fresh_issuer.fetches
    assert (await verifier.verify(fresh_issuer.mint("still-in")))["sub"] == "still-in"
    assert fresh_issuer.fetches == fetches + 1


async def test_outage_before_first_fetch_refuses(fresh_issuer: TestIssuer, client: httpx.AsyncClient) -> None:
    fresh_issuer.down = True
    with pytest.raises(TokenError, match="unknown"):
        await make_verifier(fresh_issuer, client).verify(fresh_issuer.mint())


async def test_verified_tokens_are_remembered_until_they_expire(
    fresh_issuer: TestIssuer, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = make_verifier(fresh_issuer, client)
    token = fresh_issuer.mint("cached", ttl_seconds=60)
    await verifier.verify(token)
    calls = 0
    original = verifier._verify_signature_and_claims

    async def counting(value: str) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return await original(value)

    monkeypatch.setattr(verifier, "_verify_signature_and_claims", counting)
    assert (await verifier.verify(token))["sub"] == "cached"
    assert calls == 0
    # Past the token's exp by the verifier's clock, the cache no longer vouches and the full check runs.
    monkeypatch.setattr(time, "time", lambda: 10.0**10)
    await verifier.verify(token)
    assert calls == 1


class _Guests:
    def __init__(self) -> None:
        self.ended = False
        self.asked = 0

    async def guest_ended(self, principal: Principal) -> bool:
        self.asked += 1
        return self.ended


async def test_a_remembered_token_gives_its_principal_again_until_it_expires(
    fresh_issuer: TestIssuer, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    authenticator = Authenticator(make_verifier(fresh_issuer, client))
    token = fresh_issuer.mint("cached", ttl_seconds=60)
    first = await authenticator.authenticate(f"Bearer {token}", None)
    assert await authenticator.authenticate(None, token) is first  # not rebuilt from the same claims
    other = await authenticator.authenticate(f"Bearer {fresh_issuer.mint('other')}", None)
    assert other.subject == "other"
    # Past exp by the verifier's clock the full check runs again (jwt's own clock still accepts the
    # token here) and the principal comes from the claims it returns, not from the one remembered.
    monkeypatch.setattr(time, "time", lambda: 10.0**10)
    renewed = await authenticator.authenticate(f"Bearer {token}", None)
    assert renewed is not first
    assert renewed == first


async def test_an_expired_token_is_refused_even_after_its_principal_was_built(
    fresh_issuer: TestIssuer, client: httpx.AsyncClient
) -> None:
    authenticator = Authenticator(make_verifier(fresh_issuer, client, leeway_seconds=0))
    token = fresh_issuer.mint("brief", ttl_seconds=1)
    await authenticator.authenticate(f"Bearer {token}", None)
    deadline = time.monotonic() + 30
    while True:  # until the token's second has passed
        try:
            await authenticator.authenticate(f"Bearer {token}", None)
        except APIError as exc:
            assert (exc.status_code, exc.code) == (401, "invalid_token")
            break
        assert time.monotonic() < deadline, "an expired token was still accepted"
        await asyncio.sleep(0.05)


async def test_a_remembered_guest_token_is_still_refused_once_the_guest_session_ended(
    fresh_issuer: TestIssuer, client: httpx.AsyncClient
) -> None:
    guests = _Guests()
    authenticator = Authenticator(make_verifier(fresh_issuer, client), guests=guests)
    token = fresh_issuer.mint("guest-1", extra={"roles": ["guest"]})
    assert (await authenticator.authenticate(f"Bearer {token}", None)).is_guest
    await authenticator.authenticate(f"Bearer {token}", None)
    assert guests.asked == 2  # asked on every request, cached principal or not
    guests.ended = True
    with pytest.raises(APIError) as refused:
        await authenticator.authenticate(f"Bearer {token}", None)
    assert refused.value.code == "guest_session_ended"
