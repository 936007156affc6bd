"""A stored dataset's rows: each split is a JSONL file of normalised rows (instruction,
chat or classification), and every chat-trained row reads as chat messages."""

import json
from typing import Any

from app.core.storage import ArtifactStore

SPLITS = ("train", "validation")


def read_split(*, store: ArtifactStore, dataset_id: str, split: str) -> list[dict[str, Any]]:
    """The normalised rows of one split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    text = store.read_bytes(f"files/{dataset_id}/{split}.jsonl").decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


def to_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """A row as chat messages (instruction + input or text → user, output or label → assistant)."""
    if "messages" in row:
        return list(row["messages"])
    if "label" in row:
        return [{"role": "user", "content": row["text"]}, {"role": "assistant", "content": row["label"]}]
    prompt = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    return [
        *messages,
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": row["output"]},
    ]
