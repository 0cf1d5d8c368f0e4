"""The MCP tools: argument schemas, descriptions for the model, and the call into a backend."""
