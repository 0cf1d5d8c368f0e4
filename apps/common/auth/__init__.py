"""Authentication: JWT verification against a JWKS, API keys, and the request principal."""

from apps.common.auth.principal import (
    Authenticator,
    Principal,
    PrincipalDep,
    require_admin,
)

__all__ = ["Authenticator", "Principal", "PrincipalDep", "require_admin"]
