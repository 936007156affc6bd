"""Server-sent events, parsed the way a browser's EventSource reads them."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SseMessage:
    """One dispatched message; ``id`` is the last id seen so far (what Last-Event-ID resumes from)."""

    event: str
    data: Any
    id: str | None


def parse_sse(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Messages from a text/event-stream's lines; comments (keep-alives) and ``retry:`` are skipped."""
    event, data, last_id = "message", list[str](), None
    for line in lines:
        if not line:
            if data:
                yield SseMessage(event, json.loads("\n".join(data)), last_id)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            last_id = value
