"""Token counts after the chat template, without transformers (which would import torch).

Reads a model folder's ``tokenizer.json`` with the `tokenizers` library and renders its chat
template with Jinja2 the way transformers does; a worker-side test checks the counts agree.
"""

import json
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer


def _raise(message: str) -> None:
    raise ValueError(message)


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("content"))
    return None if value is None else str(value)


class ChatTokenizer:
    """A model's tokenizer plus its chat template, for counting tokens of chat rows."""

    def __init__(self, folder: Path) -> None:
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config: dict[str, Any] = {}
        if (folder / "tokenizer_config.json").exists():
            config = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
        template = config.get("chat_template")
        if (folder / "chat_template.jinja").exists():
            template = (folder / "chat_template.jinja").read_text("utf-8")
        self.has_chat_template = bool(template)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda value, **kw: json.dumps(value, ensure_ascii=False, **kw)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now(UTC).strftime(fmt)
        self._template = env.from_string(template or _FALLBACK_TEMPLATE)
        self._special = {
            name: _token_text(config.get(name))
            for name in ("bos_token", "eos_token", "pad_token", "unk_token")
        }

    def render(self, messages: list[dict[str, str]]) -> str:
        """The text the model sees for a conversation (no generation prompt)."""
        return self._template.render(messages=messages, add_generation_prompt=False, **self._special)

    def count(self, messages: list[dict[str, str]]) -> int:
        """Number of tokens of the rendered conversation."""
        return len(self.tokenizer.encode(self.render(messages), add_special_tokens=False).ids)

    def count_many(self, conversations: list[list[dict[str, str]]]) -> list[int]:
        """Token counts of many conversations (batched in the Rust tokenizer)."""
        texts = [self.render(messages) for messages in conversations]
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]


# For tokenizers without a template: a plain "role: content" layout.
_FALLBACK_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


@lru_cache(maxsize=8)
def chat_tokenizer(folder: str) -> ChatTokenizer:
    """A cached ChatTokenizer for a model folder."""
    return ChatTokenizer(Path(folder))
