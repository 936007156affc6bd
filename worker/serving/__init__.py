"""The model server: an OpenAI-compatible API over base models, hot-swapped adapters and merged models."""
