"""Settings of response-api.

`LLM_API_URL` and `MCP_TOOLS_URL` are the two peers (`{LLM_API_URL}/v1/chat/completions`,
`{MCP_TOOLS_URL}/v1/mcp`). Conversations are llm-api's: response-api reads and extends them at
`{LLM_API_URL}/internal/conversations/…`, which needs `AUTH__INTERNAL_TOKEN` (the token it already
sends for API-key checks) to match llm-api's.

Limits keep a response bounded: at most `MAX_TOOL_EXECUTION_DEPTH` tool rounds, each tool call at
most `TOOL_EXECUTION_TIMEOUT` seconds, the whole response at most `RESPONSE_DEADLINE` seconds.
Non-positive depth or timeout fall back to the defaults, as in the reference system.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from apps.common.settings import ServiceSettings

DEFAULT_DEPTH = 8
DEFAULT_TOOL_TIMEOUT = 45.0


class ResponseApiSettings(ServiceSettings):
    service_name: str = "response-api"
    db_schema: str = "response_api"
    llm_api_url: str = "http://127.0.0.1:8080"
    mcp_tools_url: str = "http://127.0.0.1:8091"
    max_tool_execution_depth: int = DEFAULT_DEPTH
    tool_execution_timeout: float = DEFAULT_TOOL_TIMEOUT
    response_deadline: float = Field(600.0, gt=0)
    # Longest silence accepted from llm-api while it streams (a model may think before its first token).
    llm_read_timeout: float = Field(300.0, gt=0)
    # Responses this process runs at once, background ones included (they outlive their request, so
    # admission control does not count them); past it a new response is refused with a 503.
    max_running_responses: int = Field(256, ge=1)
    # When a request names no tools, offer every tool mcp-tools lists.
    offer_mcp_tools_by_default: bool = True
    mcp_server_label: str = "jan"
    # How long one `tools/list` answer is reused (the catalog is the same for every caller).
    mcp_tools_cache_seconds: float = Field(60.0, ge=0)
    # How long the final write of a background response (nobody waits for it) is retried through a
    # database outage; past it the row stays running until the orphan sweeper fails it.
    background_storage_retry_seconds: float = Field(120.0, gt=0)
    # How long the event log of a streamed background response gathers events before writing them
    # (one statement per batch; the live stream never waits for it).
    event_log_flush_seconds: float = Field(0.05, ge=0)
    # A follower of a resumable stream is woken by a notice for each batch; it also looks again after
    # this much silence, in case a notice was missed while the listener reconnected.
    stream_follow_quiet_seconds: float = Field(10.0, gt=0)

    @field_validator("max_tool_execution_depth", mode="after")
    @classmethod
    def _depth(cls, value: int) -> int:
        return value if value > 0 else DEFAULT_DEPTH

    @field_validator("tool_execution_timeout", mode="after")
    @classmethod
    def _timeout(cls, value: float) -> float:
        return value if value > 0 else DEFAULT_TOOL_TIMEOUT
