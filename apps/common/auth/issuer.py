"""A small token issuer for local mode and tests.

It signs RS256 tokens with a key kept as PEM under the data folder (created on first use with
owner-only permissions), so tokens survive restarts, and serves the public half as a JWKS. Services
verify its tokens with the same `JWKSVerifier` they use against Keycloak in a cluster.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class LocalIssuer:
    """Mints RS256 JWTs and publishes the matching JWKS."""

    def __init__(self, issuer: str, audience: str, private_key: rsa.RSAPrivateKey) -> None:
        self.issuer = issuer
        self.audience = audience
        self._private_key = private_key
        public_der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashlib.sha256(public_der).digest()[:12]
        self.kid = base64.urlsafe_b64encode(digest).decode().rstrip("=")

    @classmethod
    def generate(cls, issuer: str, audience: str) -> LocalIssuer:
        return cls(issuer, audience, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def from_key_file(cls, path: Path, issuer: str, audience: str) -> LocalIssuer:
        """Load the signing key from `path`, creating it (mode 0600) when missing."""
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            return cls(issuer, audience, key)
        issuer_obj = cls.generate(issuer, audience)
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = issuer_obj._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        return issuer_obj

    def jwks(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self._private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def mint(
        self,
        subject: str,
        *,
        ttl_seconds: int = 3600,
        roles: tuple[str, ...] = ("user",),
        extra: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_seconds,
            "jti": uuid.uuid4().hex,
            "realm_access": {"roles": list(roles)},
        }
        if extra:
            claims.update(extra)
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self.kid})
