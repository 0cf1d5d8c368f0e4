"""One `ComponentResource` per platform piece; each module's builder can be called alone in tests."""
