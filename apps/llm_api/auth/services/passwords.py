"""Password hashes for the local identity provider: scrypt (standard library), salted per account.

Stored as `scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`, so parameters can grow without invalidating
existing hashes. Only local mode stores passwords; in a cluster Keycloak does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1
_LENGTH = 32


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_LENGTH)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=_LENGTH
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected)
