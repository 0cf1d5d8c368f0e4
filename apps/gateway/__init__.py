"""The route table and the local all-in-one gateway built from it."""
