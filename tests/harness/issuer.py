"""A JWKS issuer on loopback that mints tokens, rotates keys and can go down on request."""

from __future__ import annotations

import time
from typing import Any

import jwt
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from apps.common.auth.issuer import LocalIssuer
from apps.common.settings import AuthSettings

AUDIENCE = "jan-test"


class TestIssuer:
    """Holds the current signing key (and any older ones still published) and serves them."""

    __test__ = False

    def __init__(self, issuer: str = "https://issuer.test/realms/jan", audience: str = AUDIENCE) -> None:
        self.issuer = issuer
        self.audience = audience
        self.current = LocalIssuer.generate(issuer, audience)
        self.published: list[LocalIssuer] = [self.current]
        self.down = False
        self.fetches = 0
        self.url = ""
        self.app = FastAPI()
        self.app.add_api_route("/jwks", self._jwks, methods=["GET"])

    async def _jwks(self) -> JSONResponse:
        self.fetches += 1
        if self.down:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        keys = [key for issuer in self.published for key in issuer.jwks()["keys"]]
        return JSONResponse({"keys": keys})

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    def auth_settings(self, **overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {"issuer": self.issuer, "audience": self.audience, "jwks_url": self.jwks_url}
        values.update(overrides)
        return AuthSettings(**values)

    def mint(self, subject: str = "user-1", **kwargs: Any) -> str:
        return self.current.mint(subject, **kwargs)

    def rotate(self, *, keep_old: bool = True) -> None:
        self.current = LocalIssuer.generate(self.issuer, self.audience)
        self.published = [*self.published, self.current] if keep_old else [self.current]

    def mint_expired(self, subject: str = "user-1") -> str:
        return self.current.mint(subject, now=time.time() - 7200, ttl_seconds=600)

    def mint_wrong_issuer(self, subject: str = "user-1") -> str:
        return LocalIssuer(
            "https://evil.test",
            self.audience,
            self.current._private_key,  # same key, other issuer
        ).mint(subject)

    def mint_wrong_audience(self, subject: str = "user-1") -> str:
        return self.current.mint(subject, extra={"aud": "someone-else"})

    def mint_unsigned(self, subject: str = "user-1") -> str:
        claims = {"iss": self.issuer, "aud": self.audience, "sub": subject, "exp": int(time.time()) + 600}
        return jwt.encode(claims, key="", algorithm="none", headers={"kid": self.current.kid})
