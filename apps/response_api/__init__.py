"""response-api: The OpenAI Responses API with MCP tool orchestration."""
