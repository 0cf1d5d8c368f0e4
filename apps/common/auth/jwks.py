"""Bearer JWT verification against a JSON Web Key Set.

Rules, in the order a token meets them:
- the header's `alg` must be in the allowed list (RS256/ES256 by default) and must match the key type
  of the JWK chosen by `kid`, so `alg: none` and HS256-signed-with-the-public-key tokens fail;
- the key comes from the JWKS cache; an unknown `kid` causes one refetch (at most one per
  `MIN_REFETCH_SECONDS`), which is how key rotation is picked up;
- the cache is refreshed in the background after `cache_seconds`, but a failed refresh keeps the old
  keys: an identity-provider outage must not log everyone out;
- issuer and audience must match; `exp` is required; `exp`/`nbf`/`iat` get `leeway` seconds of clock skew;
- a token that passed is remembered (bounded) until its `exp`, so repeat requests skip the signature
  check; a token is immutable, so the only thing that could change meanwhile is the key set, and
  tokens are short-lived by design.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

log = logging.getLogger(__name__)

MIN_REFETCH_SECONDS = 10.0

# Verified tokens are remembered until they expire: the RSA/EC check is the largest per-request cost.
_VERIFIED_CACHE_SIZE = 10_000

_KEY_TYPE_FOR_ALG = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "ES256": "EC", "ES384": "EC"}


class TokenError(Exception):
    """The token is not acceptable; the message is safe to show to the caller."""


@dataclass(frozen=True)
class _Key:
    kty: str
    alg: str | None
    public_key: Any


class JWKSVerifier:
    """Verifies bearer JWTs for one issuer and audience."""

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        client: httpx.AsyncClient,
        algorithms: tuple[str, ...] = ("RS256", "ES256"),
        leeway_seconds: int = 60,
        cache_seconds: float = 300.0,
        min_refetch_seconds: float = MIN_REFETCH_SECONDS,
    ) -> None:
        unknown = set(algorithms) - set(_KEY_TYPE_FOR_ALG)
        if unknown:
            raise ValueError(f"unsupported JWT algorithms: {sorted(unknown)}")
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self._client = client
        self._algorithms = algorithms
        self._leeway = leeway_seconds
        self._cache_seconds = cache_seconds
        self._min_refetch = min_refetch_seconds
        self._keys: dict[str, _Key] = {}
        self._fetched_at = 0.0
        self._last_attempt = 0.0
        self._lock = asyncio.Lock()
        self._verified: dict[str, tuple[float, dict[str, Any]]] = {}

    async def verify(self, token: str) -> dict[str, Any]:
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[0]:
            return cached[1]
        claims = await self._verify_signature_and_claims(token)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        # Trusted until exp (without the skew allowance): the signature cannot change meanwhile.
        self._verified[token] = (float(claims["exp"]), claims)
        return claims

    async def _verify_signature_and_claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise TokenError(f"token algorithm {alg!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenError("token has no key id")
        key = await self._key_for(kid)
        if key.kty != _KEY_TYPE_FOR_ALG[alg] or (key.alg is not None and key.alg != alg):
            raise TokenError("token algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("token audience is not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("token issuer is not accepted") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        return claims

    async def _key_for(self, kid: str) -> _Key:
        now = time.monotonic()
        stale = now - self._fetched_at > self._cache_seconds
        if kid not in self._keys or stale:
            await self._refresh(force=kid not in self._keys)
        key = self._keys.get(kid)
        if key is None:
            raise TokenError("token signing key is unknown")
        return key

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            now = time.monotonic()
            if now - self._last_attempt < self._min_refetch and (self._keys or not force):
                return
            if not force and now - self._fetched_at <= self._cache_seconds:
                return
            self._last_attempt = now
            try:
                response = await self._client.get(self.jwks_url)
                response.raise_for_status()
                keys = _parse_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                log.warning(
                    "JWKS fetch from %s failed; keeping %d cached keys",
                    self.jwks_url,
                    len(self._keys),
                    extra={"error": str(exc)},
                )
                return
            self._keys = keys
            self._fetched_at = now


def _parse_jwks(document: Any) -> dict[str, _Key]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS document has no keys list")
    keys: dict[str, _Key] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or "kid" not in jwk:
            continue
        kty = jwk.get("kty")
        if kty == "RSA":
            public_key: Any = RSAAlgorithm.from_jwk(jwk)
        elif kty == "EC":
            public_key = ECAlgorithm.from_jwk(jwk)
        else:
            continue
        keys[str(jwk["kid"])] = _Key(kty=kty, alg=jwk.get("alg"), public_key=public_key)
    return keys
