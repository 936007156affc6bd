"""The OpenAI-compatible /v1 routes, passed through to the model server with the caller's rights."""
