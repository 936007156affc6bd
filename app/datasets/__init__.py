"""Datasets (OpenAI's "files"): upload, parse and validate, split, describe, clean and version."""
