"""Identity in llm-api: users, API keys, guest sessions, and the internal key check.

Decisions (details in each module's docstring):
- Every authenticated caller of llm-api gets a `users` row keyed by (issuer, subject), upserted on
  first sight and then served from memory (`services/users.py`, `services/authenticator.py`); other
  routes read it with `CurrentUserDep` (`apps.llm_api.auth.deps`).
- API keys are `sk_live_…`, shown once, stored as SHA-256, always expiring, limited per user, resolved
  from the database on every llm-api request (revocation is immediate) with `last_used_at` written at
  most once a minute per key (`services/api_keys.py`). Keys act with the `user` role, never `admin`.
  Guests cannot create keys, except in local mode where guest login is the only way in; keys cannot
  manage keys (`routes/api_keys.py`).
- Other services validate keys at `POST /internal/api-keys/validate`, guarded by the internal token
  (`routes/internal.py`).
- Guest sessions come from Keycloak (admin API + token exchange) when configured, else from the local
  issuer; refresh tokens of the local issuer are accepted by llm-api only (`services/tokens.py`,
  `services/keycloak.py`).
"""
