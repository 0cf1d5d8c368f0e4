"""The one failure type every backend raises.

The message is written for the model that called the tool: what went wrong and what to do about it
(retry later, change an argument, ask the operator to configure something). It subclasses the SDK's
`ToolError` because that is the exception the SDK reports as a tool result with `isError: true` and
the message intact (anything else becomes a generic "Error executing tool"); it never becomes a
transport error.
"""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError


class ToolFailure(ToolError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
