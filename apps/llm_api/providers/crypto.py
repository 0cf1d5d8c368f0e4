"""Provider API keys at rest: AES-256-GCM with a key derived from `model_provider_secret`.

Stored form: base64(nonce ‖ ciphertext+tag). The key is SHA-256 of the secret, so any secret length
works and the same secret always opens what it sealed. Only the last four characters of a key are
kept in clear (`api_key_hint`) so admins can tell keys apart.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apps.common.errors import APIError

_NONCE_BYTES = 12


class KeyBox:
    def __init__(self, secret: str | None) -> None:
        self._aead = AESGCM(hashlib.sha256(secret.encode()).digest()) if secret else None

    def seal(self, api_key: str) -> str:
        if self._aead is None:
            raise APIError(
                400,
                "Provider API keys cannot be stored: set MODEL_PROVIDER_SECRET on llm-api first.",
                code="provider_secret_not_configured",
            )
        nonce = os.urandom(_NONCE_BYTES)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, api_key.encode(), b"provider")).decode()

    def open(self, sealed: str) -> str:
        if self._aead is None:
            raise ValueError("provider key cannot be decrypted: MODEL_PROVIDER_SECRET is not set")
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], b"provider").decode()
        except InvalidTag as exc:
            raise ValueError("provider key cannot be decrypted: was model_provider_secret changed?") from exc


def key_hint(api_key: str | None) -> str | None:
    return api_key[-4:] if api_key and len(api_key) > 8 else None
