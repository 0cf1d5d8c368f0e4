"""mcp-tools: The MCP tools server: web search, scrape, file search, python exec."""
