"""llm-api: OpenAI-compatible chat completions, models, conversations and auth."""
