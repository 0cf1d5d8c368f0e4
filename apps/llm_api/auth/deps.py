"""Dependencies other llm-api routes use to know who calls: `CurrentUserDep` gives the caller's
`users` row (id for foreign keys, public id for the wire) next to the `Principal`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from apps.common.auth.principal import PrincipalDep
from apps.common.state import optional_state_dependency, state_dependency
from apps.llm_api.auth.services.api_keys import APIKeyStore
from apps.llm_api.auth.services.tokens import SessionIssuer
from apps.llm_api.auth.services.users import UserDirectory, UserRecord

UsersDep = Annotated[UserDirectory, Depends(state_dependency("users", UserDirectory))]
APIKeysDep = Annotated[APIKeyStore, Depends(state_dependency("api_keys", APIKeyStore))]
SessionIssuerDep = Annotated[
    SessionIssuer | None,
    Depends(optional_state_dependency("session_issuer", SessionIssuer)),
]


async def get_current_user(principal: PrincipalDep, users: UsersDep) -> UserRecord:
    return await users.ensure(principal)


CurrentUserDep = Annotated[UserRecord, Depends(get_current_user)]
