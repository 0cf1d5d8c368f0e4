"""Dependencies other llm-api routes use to know who calls: `CurrentUserDep` gives the caller's
`users` row (id for foreign keys, public id for the wire) next to the `Principal`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from apps.common.auth.principal import PrincipalDep
from apps.llm_api.auth.services.api_keys import APIKeyStore
from apps.llm_api.auth.services.tokens import SessionIssuer
from apps.llm_api.auth.services.users import UserDirectory, UserRecord


def get_users(request: Request) -> UserDirectory:
    users: UserDirectory = request.app.state.users
    return users


def get_api_keys(request: Request) -> APIKeyStore:
    store: APIKeyStore = request.app.state.api_keys
    return store


def get_session_issuer(request: Request) -> SessionIssuer | None:
    issuer: SessionIssuer | None = request.app.state.session_issuer
    return issuer


UsersDep = Annotated[UserDirectory, Depends(get_users)]
APIKeysDep = Annotated[APIKeyStore, Depends(get_api_keys)]
SessionIssuerDep = Annotated[SessionIssuer | None, Depends(get_session_issuer)]


async def get_current_user(principal: PrincipalDep, users: UsersDep) -> UserRecord:
    return await users.ensure(principal)


CurrentUserDep = Annotated[UserRecord, Depends(get_current_user)]
