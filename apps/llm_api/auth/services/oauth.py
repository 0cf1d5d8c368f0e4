"""What llm-api's two OAuth 2.0 clients share: Keycloak guest sessions (`keycloak.py`) and the browser
login (`oidc.py`); and the PKCE S256 challenge, which the local provider (`local_provider.py`) checks."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx

from apps.common.errors import APIError
from apps.llm_api.auth.services.tokens import TokenPair


def unavailable(detail: str) -> APIError:
    return APIError(
        503,
        f"The identity provider is unavailable ({detail}); try again shortly.",
        code="identity_provider_unavailable",
    )


def oauth_error(response: httpx.Response) -> str:
    """An OAuth error answer (`{"error", "error_description"}`, RFC 6749 §5.2) in a few words."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and body.get("error"):
        return f"{body['error']}: {body.get('error_description', '')}".rstrip(": ")
    return f"HTTP {response.status_code}"


def token_pair(body: Any) -> TokenPair:
    """The pair of a token endpoint's answer; KeyError, TypeError or ValueError when incomplete."""
    return TokenPair(
        access_token=str(body["access_token"]),
        refresh_token=str(body["refresh_token"]),
        expires_in=int(body.get("expires_in", 0)),
    )


def s256(verifier: str) -> str:
    """The PKCE `S256` code challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
