"""Settings of mcp-tools.

Field names follow the original service's environment variables where one exists (`SERPER_API_KEY`,
`SEARXNG_URL`, `SANDBOX_FUSION_URL`), so an existing deployment's environment keeps working. A backend
whose URL or key is unset is simply not used; a tool whose every backend is unset answers with a tool
error that tells the operator what to configure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from apps.common.settings import ServiceSettings

SearchEngine = Literal["serper", "searxng"]


class McpToolsSettings(ServiceSettings):
    service_name: str = "mcp-tools"
    db_schema: str = "mcp_tools"

    # Transport. Empty `mcp_allowed_hosts` turns the SDK's DNS-rebinding check off: the endpoint
    # needs credentials anyway and sits behind Kong or a Kubernetes Service whose Host varies.
    # Entries may end in `:*` for any port (`localhost:*`).
    mcp_allowed_hosts: tuple[str, ...] = ()
    mcp_allowed_origins: tuple[str, ...] = ()
    mcp_max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # External MCP servers to bridge (see services/providers.py); a missing file means none.
    mcp_providers_file: Path | None = Path("configs/mcp-providers.yml")

    # Web search: engines are tried in this order, skipping the ones without a URL/key.
    search_engines: tuple[SearchEngine, ...] = ("serper", "searxng")
    serper_api_key: SecretStr | None = None
    serper_url: str = "https://google.serper.dev"
    # Serper's scraper is used for `scrape` only when this is set (and the key is); direct fetch is
    # the fallback either way.
    serper_scrape_url: str | None = None
    searxng_url: str | None = None
    search_timeout_seconds: float = Field(30.0, gt=0)

    # Scrape: the shared SSRF guard's limits and allow-list (host names or CIDR networks).
    scrape_max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    scrape_timeout_seconds: float = Field(15.0, gt=0)
    scrape_allow: tuple[str, ...] = ()

    # File search: embeddings from an OpenAI-compatible endpoint, else the local MiniLM model.
    embeddings_url: str | None = None
    embeddings_api_key: SecretStr | None = None
    embeddings_model: str = "text-embedding-3-small"
    embeddings_local: bool = True
    embeddings_timeout_seconds: float = Field(30.0, gt=0)
    media_api_url: str = "http://127.0.0.1:8285"
    file_max_bytes: int = Field(20 * 1024 * 1024, ge=1024)

    # Python exec: SandboxFusion. `sandbox_timeout_seconds` bounds every call, whatever the caller asks.
    sandbox_fusion_url: str | None = None
    sandbox_timeout_seconds: float = Field(30.0, gt=0, le=600)
    # Long tools (python_exec, scrape, file indexing) report progress this often to callers that ask.
    tool_progress_seconds: float = Field(2.0, gt=0)
