"""Guest sessions through Keycloak, with the confidential backend client's service account.

Guest login, step by step (every call is Keycloak's documented REST or OIDC protocol):
1. service-account token: client-credentials grant on the realm's token endpoint (cached until shortly
   before it expires);
2. `POST /admin/realms/{realm}/users` creates `guest-<uuid>` (attribute `guest=true`); the new id is the
   last segment of the 201's `Location`;
3. `GET /admin/realms/{realm}/roles/{guest_role}` then
   `POST /admin/realms/{realm}/users/{id}/role-mappings/realm` gives it the guest realm role;
4. token exchange (`urn:ietf:params:oauth:grant-type:token-exchange`, `requested_subject=<id>`,
   requesting a refresh token) with the backend client's credentials: Keycloak's direct impersonation.

Refresh is the standard `refresh_token` grant with the same client, which is the client the exchanged
tokens belong to. Failures are explicit: Keycloak unreachable or answering 5xx on its token endpoint is
503 `identity_provider_unavailable`; the admin API or the exchange refusing is 502
`guest_provisioning_failed`; a refresh token Keycloak rejects is 401.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from apps.common.errors import APIError
from apps.llm_api.auth.services.oauth import oauth_error, token_pair, unavailable
from apps.llm_api.auth.services.tokens import TokenPair, invalid_refresh_token
from apps.llm_api.auth.settings import KeycloakSettings

log = logging.getLogger(__name__)

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"  # noqa: S105 - a URN
_SERVICE_TOKEN_MARGIN_SECONDS = 30.0


def provisioning_failed(detail: str) -> APIError:
    return APIError(502, f"Failed to provision a guest account: {detail}.", code="guest_provisioning_failed")


def upgrade_failed(detail: str) -> APIError:
    return APIError(502, f"Failed to upgrade the guest account: {detail}.", code="upgrade_failed")


class KeycloakSessions:
    def __init__(self, settings: KeycloakSettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        base = settings.base_url.rstrip("/")
        self._token_url = f"{base}/realms/{settings.realm}/protocol/openid-connect/token"
        self._admin_url = f"{base}/admin/realms/{settings.realm}"
        self._service_token: tuple[float, str] | None = None

    async def guest_login(self) -> TokenPair:
        user_id = await self._create_guest()
        mapping = await self._guest_role(provisioning_failed)
        response = await self._admin("POST", f"/users/{user_id}/role-mappings/realm", json=mapping)
        if response.status_code not in (200, 204):
            raise provisioning_failed(f"role mapping answered {response.status_code}")
        return await self._exchange(user_id, provisioning_failed)

    async def upgrade(self, user_id: str, email: str, password: str, name: str | None) -> TokenPair:
        """The guest's Keycloak user becomes a registered one in place (same id, hence same `sub`):
        email and password set, `guest` attribute and realm role removed, its sessions logged out (so
        the guest's refresh tokens die), then fresh tokens by the same exchange guest login uses."""
        # The username stays (`guest-…`; Keycloak may forbid renaming): the realm logs in by email.
        profile = {
            "email": email,
            "emailVerified": False,
            "firstName": name or email.split("@", 1)[0],
            "attributes": {"guest": ["false"]},
        }
        response = await self._admin("PUT", f"/users/{user_id}", json=profile)
        if response.status_code == 409:
            raise APIError(
                409, "An account with this email already exists.", param="email", code="email_taken"
            )
        if response.status_code not in (200, 204):
            raise upgrade_failed(f"user update answered {response.status_code}")
        credential = {"type": "password", "value": password, "temporary": False}
        response = await self._admin("PUT", f"/users/{user_id}/reset-password", json=credential)
        if response.status_code == 400:
            raise APIError(400, "The identity provider refused this password.", param="password")
        if response.status_code not in (200, 204):
            raise upgrade_failed(f"password reset answered {response.status_code}")
        mapping = await self._guest_role(upgrade_failed)
        response = await self._admin("DELETE", f"/users/{user_id}/role-mappings/realm", json=mapping)
        if response.status_code not in (200, 204):
            raise upgrade_failed(f"guest role removal answered {response.status_code}")
        response = await self._admin("POST", f"/users/{user_id}/logout")
        if response.status_code not in (200, 204):
            raise upgrade_failed(f"logout answered {response.status_code}")
        return await self._exchange(user_id, upgrade_failed)

    async def refresh(self, refresh_token: str) -> TokenPair:
        response = await self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})
        if response.status_code in (400, 401):
            raise invalid_refresh_token(f"the identity provider refused it ({oauth_error(response)})")
        if response.status_code != 200:
            raise unavailable(f"token endpoint answered {response.status_code}")
        return _pair(response)

    async def _create_guest(self) -> str:
        name = f"guest-{uuid.uuid4()}"
        user = {
            "username": name,
            "enabled": True,
            "firstName": "Guest",
            "attributes": {"guest": ["true"]},
            "requiredActions": [],
        }
        response = await self._admin("POST", "/users", json=user)
        location = str(response.headers.get("location", ""))
        user_id = location.rstrip("/").rsplit("/", 1)[-1]
        if response.status_code != 201 or "/users/" not in location or not user_id:
            raise provisioning_failed(f"user creation answered {response.status_code}")
        return user_id

    async def _guest_role(self, failed: Callable[[str], APIError]) -> list[dict[str, Any]]:
        """The guest realm role as a role-mapping body (what the mapping calls take)."""
        role_name = self._settings.guest_role
        response = await self._admin("GET", f"/roles/{role_name}")
        if response.status_code != 200:
            raise failed(f"realm role '{role_name}' lookup answered {response.status_code}")
        role = response.json()
        return [{"id": role["id"], "name": role["name"]}]

    async def _exchange(self, user_id: str, failed: Callable[[str], APIError]) -> TokenPair:
        """Tokens for the user, by the backend client's direct impersonation (token exchange)."""
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "requested_subject": user_id,
            "requested_token_type": REFRESH_TOKEN_TYPE,
        }
        if self._settings.audience:
            form["audience"] = self._settings.audience
        response = await self._token_request(form)
        if response.status_code != 200:
            raise failed(f"token exchange refused ({oauth_error(response)})")
        return _pair(response)

    async def _admin(self, method: str, path: str, *, json: Any = None) -> httpx.Response:
        response = await self._admin_once(method, path, json)
        if response.status_code == 401:
            # The cached service token may have been revoked (e.g. Keycloak restarted): log in again.
            self._service_token = None
            response = await self._admin_once(method, path, json)
        return response

    async def _admin_once(self, method: str, path: str, json: Any) -> httpx.Response:
        token = await self._admin_token()
        try:
            return await self._client.request(
                method,
                self._admin_url + path,
                json=json,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self._settings.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            raise unavailable(f"admin API unreachable: {type(exc).__name__}") from exc

    async def _admin_token(self) -> str:
        cached = self._service_token
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        response = await self._token_request({"grant_type": "client_credentials"})
        if response.status_code != 200:
            raise provisioning_failed(f"service account login refused ({oauth_error(response)})")
        body = response.json()
        lifetime = float(body.get("expires_in", 60))
        token = str(body["access_token"])
        self._service_token = (time.monotonic() + lifetime - _SERVICE_TOKEN_MARGIN_SECONDS, token)
        return token

    async def _token_request(self, form: dict[str, str]) -> httpx.Response:
        credentials = {
            "client_id": self._settings.backend_client_id,
            "client_secret": self._settings.backend_client_secret.get_secret_value(),
        }
        try:
            response = await self._client.post(
                self._token_url, data={**form, **credentials}, timeout=self._settings.timeout_seconds
            )
        except httpx.HTTPError as exc:
            raise unavailable(f"token endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            log.warning("Keycloak token endpoint answered %s", response.status_code)
            raise unavailable(f"token endpoint answered {response.status_code}")
        return response


def _pair(response: httpx.Response) -> TokenPair:
    try:
        return token_pair(response.json())
    except (KeyError, TypeError, ValueError) as exc:
        raise provisioning_failed("the identity provider's token response is incomplete") from exc
