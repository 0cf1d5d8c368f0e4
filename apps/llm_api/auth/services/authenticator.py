"""llm-api's authenticator: the kit's JWT/API-key checks, then the caller's `users` row.

Installing it on `app.state.authenticator` makes every authenticated request of llm-api, whichever
route it reaches, create or refresh its user row (through the directory's cache, so a steady caller
costs no database round trip), makes `sk_…` keys resolve against llm-api's own table, and refuses the
tokens of a guest that became an account (`UserDirectory.guest_ended`).
"""

from __future__ import annotations

from apps.common.auth.jwks import JWKSVerifier
from apps.common.auth.principal import Authenticator, Principal
from apps.llm_api.auth.services.api_keys import APIKeyStore
from apps.llm_api.auth.services.users import UserDirectory


class UserRecordingAuthenticator(Authenticator):
    def __init__(self, verifier: JWKSVerifier, api_keys: APIKeyStore, users: UserDirectory) -> None:
        super().__init__(verifier, api_keys, guests=users)
        self.users = users

    async def authenticate(self, authorization: str | None, api_key_header: str | None) -> Principal:
        principal = await super().authenticate(authorization, api_key_header)
        await self.users.ensure(principal)
        return principal
