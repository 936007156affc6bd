"""Live job updates as server-sent events.

Each message's id is ``<last metric id>-<last event id>``; a client that reconnects with
Last-Event-ID receives exactly what it has not seen, so charts get no gap and no duplicate.
"""

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.core.db import read_session
from app.core.prometheus import SSE_CONNECTIONS
from app.jobs import service
from app.jobs.schemas import EventPublic, JobPublic

KEEPALIVE_SECONDS = 15.0
BATCH = 5000


def parse_cursor(value: str | None) -> tuple[int, int]:
    """(metric id, event id) from a Last-Event-ID; (0, 0) when absent or malformed."""
    try:
        metric, event = (value or "").split("-")
        return max(0, int(metric)), max(0, int(event))
    except ValueError:
        return 0, 0


def _message(event: str, data: Any, cursor: str) -> str:
    return f"id: {cursor}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


Poll = tuple[dict[str, Any], list[Any], list[Any]]
_recent: dict[tuple[str, int, int], tuple[float, Poll]] = {}
_recent_lock = threading.Lock()


def _poll(job_id: str, metric_after: int, event_after: int, max_age: float = 0.0) -> Poll:
    """What happened after the cursor. Watchers of one job that are at the same cursor share one
    database read per ``max_age`` (100 open pages on a job cost about one query set, not 100)."""
    key = (job_id, metric_after, event_after)
    now = time.monotonic()
    with _recent_lock:
        hit = _recent.get(key)
        if hit is not None and now - hit[0] <= max_age:
            return hit[1]
    result = _read(job_id, metric_after, event_after)
    with _recent_lock:
        if len(_recent) > 1000:  # forget stale cursors
            for stale in [k for k, (at, _) in _recent.items() if now - at > 5 * max_age + 1]:
                del _recent[stale]
        _recent[key] = (time.monotonic(), result)
    return result


def _read(job_id: str, metric_after: int, event_after: int) -> Poll:
    # Read the job first: if it is finished now, every point it wrote is already committed.
    with read_session() as session:
        job = service.get_job(session=session, job_id=job_id)
        summary = JobPublic.of(job).model_dump(mode="json")
        points = service.metrics_since(session=session, job_id=job_id, after_id=metric_after, limit=BATCH)
        events = service.events_since(session=session, job_id=job_id, after_id=event_after, limit=BATCH)
        return summary, points, events


def _status_key(summary: dict[str, Any] | None) -> tuple[Any, ...]:
    """What makes a status message worth sending (the ETA alone changes every second)."""
    if summary is None:
        return ()
    keys = ("status", "error", "cancel_requested", "fine_tuned_model", "train_loss", "valid_loss")
    progress = summary["progress"]
    return (*(str(summary[k]) for k in keys), progress["step"], progress["total_steps"])


async def job_events(job_id: str, last_event_id: str | None, poll_seconds: float) -> AsyncIterator[str]:
    """The SSE body for one watcher of job ``job_id``, counted in tunedeck_sse_connections while open."""
    SSE_CONNECTIONS.inc()
    try:
        async for message in _job_events(job_id, last_event_id, poll_seconds):
            yield message
    finally:
        SSE_CONNECTIONS.dec()


async def _job_events(job_id: str, last_event_id: str | None, poll_seconds: float) -> AsyncIterator[str]:
    metric_after, event_after = parse_cursor(last_event_id)
    last_summary: dict[str, Any] | None = None
    # wall-clock time: with many watchers a poll waits for a thread, and counting sleeps let a
    # quiet stream go silent for 25 s and more (bench/load.py), past clients' read timeouts
    last_sent = time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        summary, points, events = await run_in_threadpool(
            _poll, job_id, metric_after, event_after, poll_seconds * 0.8
        )
        metric_after = points[-1].id if points else metric_after
        event_after = events[-1].id if events else event_after
        cursor = f"{metric_after}-{event_after}"
        if points:
            data = [{"id": p.id, "k": p.key, "s": p.step, "e": p.epoch, "v": p.value} for p in points]
            yield _message("metrics", data, cursor)
        if events:
            yield _message("events", [EventPublic.of(e).model_dump(mode="json") for e in events], cursor)
        changed = _status_key(summary) != _status_key(last_summary)
        if changed:
            yield _message("status", summary, cursor)
            last_summary = summary
        more = len(points) == BATCH or len(events) == BATCH
        if summary["status"] in ("succeeded", "failed", "cancelled") and not more:
            yield _message("end", {"status": summary["status"]}, cursor)
            return
        if more:
            continue
        if points or events or changed:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
        await asyncio.sleep(poll_seconds)
