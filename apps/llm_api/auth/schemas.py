"""Wire models of the auth endpoints. These are our own resources, so they are strict: unknown fields
and wrong JSON types are rejected (400 in the OpenAI envelope). Times are Unix seconds, as OpenAI's."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class APIKeyCreate(StrictModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    # Omitted or null: the server's default lifetime. Bounded above by the server's maximum.
    expires_in_days: int | None = Field(None, ge=1)


class APIKeyObject(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str
    suffix: str
    status: Literal["active", "expired", "revoked"]
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    revoked_at: int | None


class APIKeyCreated(APIKeyObject):
    key: str = Field(description="The secret. Shown only in this response; store it now.")


class APIKeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[APIKeyObject]


class APIKeyDeleted(BaseModel):
    id: str
    object: Literal["api_key.deleted"] = "api_key.deleted"
    deleted: bool = True


class RefreshRequest(StrictModel):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=16_384)]


class UserObject(BaseModel):
    id: str
    object: Literal["user"] = "user"
    subject: str
    issuer: str
    email: str | None
    name: str | None
    is_guest: bool
    roles: list[str]
    auth_method: Literal["jwt", "api_key"]
    api_key_id: str | None
    created_at: int


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class GuestLoginResponse(TokenResponse):
    user: UserObject


class ValidateKeyRequest(StrictModel):
    # Any string: a value that cannot be a key is an invalid key (401), which callers cache as such.
    api_key: Annotated[str, StringConstraints(min_length=1, max_length=16_384)]


class ValidatedKey(BaseModel):
    """What `apps.common.auth.remote_keys.RemoteAPIKeyResolver` reads."""

    subject: str
    issuer: str
    roles: list[str]
    email: str | None
    name: str | None
    key_id: str


class RevokedKeys(BaseModel):
    """SHA-256 hex of each key to drop, and llm-api's clock for the next `since`."""

    revoked: list[str]
    until: float
    # Subjects of guests that became registered accounts: refuse their tokens with the `guest` role.
    ended_guests: list[str] = []


class LoginTokens(TokenResponse):
    """What `GET /v1/auth/callback` answers when the login named no redirect target."""

    id_token: str
    user: UserObject


class SessionRequest(RefreshRequest):
    """`POST /v1/auth/logout` and `POST /v1/auth/revoke`: the refresh token is the credential."""


class SessionEnded(BaseModel):
    object: Literal["auth.session"] = "auth.session"
    status: Literal["logged_out", "revoked"]


class UpgradeRequest(StrictModel):
    """Either an email and a password (a new account at the identity provider), or the `id_token`
    of a login just made (`/v1/auth/callback`) whose identity the guest takes over."""

    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320)] | None = (
        None
    )
    password: Annotated[str, StringConstraints(min_length=8, max_length=256)] | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)] | None = None
    id_token: Annotated[str, StringConstraints(min_length=1, max_length=16_384)] | None = None


class UpgradeResponse(TokenResponse):
    user: UserObject
