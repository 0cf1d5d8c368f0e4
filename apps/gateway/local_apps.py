"""How local mode configures each app: one builder per app, all from one `LocalEnvironment`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from pydantic import SecretStr

from apps.common.health import ReadinessCheck
from apps.common.settings import AuthSettings
from apps.gateway.routes import AppName
from apps.llm_api.auth.settings import OIDCSettings
from apps.llm_api.main import create_app as create_llm_api
from apps.llm_api.providers.catalog import ModelCatalog
from apps.llm_api.settings import LlmApiSettings
from apps.mcp_tools.main import create_app as create_mcp_tools
from apps.mcp_tools.settings import McpToolsSettings
from apps.media_api.main import create_app as create_media_api
from apps.media_api.settings import MediaApiSettings
from apps.response_api.main import create_app as create_response_api
from apps.response_api.settings import ResponseApiSettings

LOCAL_AUDIENCE = "jan-api"


@dataclass(frozen=True)
class LocalEnvironment:
    base_url: str
    data_dir: Path
    database_url: str
    s3_endpoint_url: str
    model_url: str | None
    model_api_key: str | None
    internal_token: str
    model_kind: str = "openai_compatible"
    # The supervised local model's readiness, reported by llm-api's `/readyz` (local mode only).
    model_check: ReadinessCheck | None = None
    # Catalog metadata for the environment provider's models (the local model's, when it runs).
    model_catalog: Mapping[str, ModelCatalog] = field(default_factory=dict)
    # Where a finished browser login may send the browser, besides this server's own root.
    login_redirects: tuple[str, ...] = ()

    @property
    def media_resolve_url(self) -> str:
        """Where llm-api resolves `jan_…` media placeholders: media-api behind the local gateway."""
        return f"{self.base_url}/v1/media/resolve"

    def auth(self) -> AuthSettings:
        return AuthSettings(
            issuer=self.base_url,
            audience=LOCAL_AUDIENCE,
            jwks_url=f"{self.base_url}/.well-known/jwks.json",
            api_key_validation_url=f"{self.base_url}/internal/api-keys/validate",
            internal_token=SecretStr(self.internal_token),
        )


def build_apps(env: LocalEnvironment) -> dict[AppName, FastAPI]:
    return {
        AppName.LLM_API: llm_api(env),
        AppName.RESPONSE_API: response_api(env),
        AppName.MEDIA_API: media_api(env),
        AppName.MCP_TOOLS: mcp_tools(env),
    }


def llm_api(env: LocalEnvironment) -> FastAPI:
    # The local model (or the upstream named by LLM_UPSTREAM_URL) is the environment provider "local";
    # a PROVIDERS_FILE in the environment adds providers ahead of it.
    app = create_llm_api(
        LlmApiSettings(
            database_url=SecretStr(env.database_url),
            auth=env.auth(),
            local_issuer_key_file=env.data_dir / "issuer-key.pem",
            default_provider_url=env.model_url,
            default_provider_api_key=SecretStr(env.model_api_key) if env.model_api_key else None,
            default_provider_name="local",
            default_provider_kind=env.model_kind,
            default_provider_catalog=dict(env.model_catalog),
            media_resolve_url=env.media_resolve_url,
            model_provider_secret=SecretStr(_local_secret(env.data_dir / "provider-secret")),
            # llm-api's own local identity provider plays Keycloak for the browser login.
            oidc=OIDCSettings(
                discovery_url=f"{env.base_url}/.well-known/openid-configuration",
                callback_url=f"{env.base_url}/v1/auth/callback",
                allowed_redirects=(f"{env.base_url}/", *env.login_redirects),
            ),
        )
    )
    if env.model_check is not None:
        app.state.readiness.add("model", env.model_check)
    return app


def response_api(env: LocalEnvironment) -> FastAPI:
    # Its peers are reached through the local gateway, as Kong's in-cluster routes would be.
    return create_response_api(
        ResponseApiSettings(
            database_url=SecretStr(env.database_url),
            auth=env.auth(),
            llm_api_url=env.base_url,
            mcp_tools_url=env.base_url,
        )
    )


def media_api(env: LocalEnvironment) -> FastAPI:
    # moto accepts any key pair; another local store brings its own keys in MEDIA_S3_ACCESS_KEY/SECRET_KEY.
    keys: dict[str, SecretStr] = {}
    if not os.environ.get("MEDIA_S3_ACCESS_KEY"):
        keys = {"media_s3_access_key": SecretStr("local"), "media_s3_secret_key": SecretStr("local")}
    return create_media_api(
        MediaApiSettings(
            database_url=SecretStr(env.database_url),
            auth=env.auth(),
            media_s3_endpoint=env.s3_endpoint_url,
            media_s3_use_path_style=True,
            media_s3_create_bucket=True,
            **keys,  # type: ignore[arg-type]
        )
    )


def mcp_tools(env: LocalEnvironment) -> FastAPI:
    """Search, sandbox and embedding backends come from the environment (`SERPER_API_KEY`,
    `SEARXNG_URL`, `SANDBOX_FUSION_URL`, `EMBEDDINGS_URL`, …); without `EMBEDDINGS_URL` file search
    runs the bundled MiniLM model when the `embeddings` extra is installed. media-api is reached
    through this gateway."""
    return create_mcp_tools(
        McpToolsSettings(
            database_url=SecretStr(env.database_url), auth=env.auth(), media_api_url=env.base_url
        )
    )


def _local_secret(path: Path) -> str:
    """A random secret kept under the data folder (owner-only), so local restarts can read old data."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
