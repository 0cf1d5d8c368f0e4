"""Settings of mcp-tools."""

from __future__ import annotations

from apps.common.settings import ServiceSettings


class McpToolsSettings(ServiceSettings):
    service_name: str = "mcp-tools"
    db_schema: str = "mcp_tools"
