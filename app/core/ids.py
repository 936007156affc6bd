"""Opaque, prefixed ids as the API shows them (`file-…`, `ftjob-…`, `ftckpt-…`)."""

import secrets


def new_id(prefix: str) -> str:
    """A random id such as ``ftjob-3f9c2a7b1d0e4c55a6b8e1f2``."""
    return f"{prefix}-{secrets.token_hex(12)}"


def new_underscored_id(prefix: str) -> str:
    """An id in the style of OpenAI's newer APIs, such as ``eval_3f9c2a7b1d0e4c55a6b8e1f2``."""
    return f"{prefix}_{secrets.token_hex(12)}"
