"""The tools' backends: plain classes without FastAPI imports, usable outside the MCP server."""
