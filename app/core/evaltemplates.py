"""What the eval API (checking a run before it starts) and the worker's runner (filling a run's
templates) read alike: ``{{item.…}}`` / ``{{sample.…}}`` references, dotted paths into an item,
and the text-similarity metrics there are."""

import re
from typing import Any

REFERENCE = re.compile(r"\{\{\s*(item|sample)\.([A-Za-z0-9_.\-]+)\s*\}\}")
METRICS = (
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
)


def lookup(namespace: Any, path: str) -> Any:
    """The value at dotted ``path`` (list positions as numbers), or None when it is not there."""
    value: Any = namespace
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
