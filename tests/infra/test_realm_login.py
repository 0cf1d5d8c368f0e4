"""The realm serves llm-api's browser login: its callback is a redirect URI of the public PKCE client,
and the settings llm-api's login client needs agree with what the realm issues."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from apps.llm_api.auth.settings import OIDCSettings
from infra.specs.identity import IdentityInputs, issuer
from infra.specs.keycloak_realm import (
    BACKEND_SERVICE_ACCOUNT_ROLES,
    RealmInputs,
    client,
    realm_json,
    token_audiences,
)

IDENTITY = IdentityInputs(public_url="https://auth.example.com")
CALLBACK = "https://api.example.com/v1/auth/callback"


def inputs(**changes: object) -> RealmInputs:
    values: dict[str, object] = {
        "identity": IDENTITY,
        "backend_client_secret": SecretStr("x"),
        "redirect_uris": ("https://chat.example.com/auth/callback",),
        "api_callback_urls": (CALLBACK,),
    }
    return RealmInputs(**{**values, **changes})


def test_the_api_callback_is_a_redirect_uri_of_the_public_pkce_client() -> None:
    public = client(realm_json(inputs()), IDENTITY.public_client_id)
    assert public["redirectUris"] == ["https://chat.example.com/auth/callback", CALLBACK]
    assert public["publicClient"] is True and public["standardFlowEnabled"] is True
    assert public["attributes"]["pkce.code.challenge.method"] == "S256"
    # The login client of llm-api, configured for this realm, is that client and that callback.
    settings = OIDCSettings(
        discovery_url=f"{issuer(IDENTITY)}/.well-known/openid-configuration",
        callback_url=CALLBACK,
        client_id=IDENTITY.public_client_id,
    )
    assert settings.client_secret is None  # public client: PKCE, no secret
    assert settings.callback_url in public["redirectUris"]
    # Tokens from the login carry the API audience every app requires.
    assert IDENTITY.audience in token_audiences(realm_json(inputs()), IDENTITY.public_client_id)


def test_a_callback_listed_twice_appears_once() -> None:
    public = client(realm_json(inputs(redirect_uris=(CALLBACK,))), IDENTITY.public_client_id)
    assert public["redirectUris"] == [CALLBACK]


def test_without_api_callbacks_the_client_is_unchanged() -> None:
    public = client(realm_json(inputs(api_callback_urls=())), IDENTITY.public_client_id)
    assert public["redirectUris"] == ["https://chat.example.com/auth/callback"]


@pytest.mark.parametrize("bad", ["*", "+", "/v1/auth/callback", "api.example.com/v1/auth/callback"])
def test_api_callbacks_must_be_absolute_urls(bad: str) -> None:
    with pytest.raises(ValidationError):
        inputs(api_callback_urls=(bad,))


def test_the_backend_may_upgrade_guests() -> None:
    """Guest upgrade updates the user, resets its password, unmaps `guest` and logs it out:
    all under realm-management's `manage-users`."""
    assert "manage-users" in BACKEND_SERVICE_ACCOUNT_ROLES
