"""Readiness checks: can this process do its work right now?

Liveness (``/livez``) only says the process answers; readiness (``/readyz``) says its
dependencies do: the database (at the schema this code expects), the broker when one is
configured, and the artifact store. A load balancer or Compose waits for readiness before
sending traffic, and an orchestrator restarts a process only when liveness fails, so a database
outage takes replicas out of rotation without a restart storm.
"""

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from starlette.responses import JSONResponse

from app.core.config import get_settings
from app.core.db import alembic_dir, get_engine
from app.core.logs import redact
from app.core.storage import S3ArtifactStore, get_store

log = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 5.0
# Checks run on their own few threads: a dependency that hangs (a firewalled database port)
# must not use up the threads the app's requests run on.
_checks_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")

Check = Callable[[], None]  # raises when the dependency is not usable


class NotReady(Exception):
    """A dependency answered, but not as this code needs (e.g. the schema is behind)."""


@lru_cache
def _code_heads() -> frozenset[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def check_database() -> None:
    """The database answers and its schema is at the newest Alembic revision this code has."""
    with get_engine().connect() as connection:
        connection.execute(sa.text("select 1"))
        # read the version table directly: Alembic's MigrationContext logs twice per call
        migrated = sa.inspect(connection).has_table("alembic_version")
        query = sa.text("select version_num from alembic_version")
        current = frozenset(connection.execute(query).scalars()) if migrated else frozenset()
    if current != _code_heads():
        have, want = ", ".join(sorted(current)) or "empty", ", ".join(sorted(_code_heads()))
        raise NotReady(f"schema at {have}, code expects {want}: run `tunedeck migrate`")


def check_broker() -> None:
    """Redis (REDIS_URL) answers a PING."""
    import redis

    url = get_settings().redis_url or ""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def check_storage() -> None:
    """The artifact store is usable: the bucket answers (s3), or the folder is writable (local)."""
    store = get_store()
    if isinstance(store, S3ArtifactStore):
        store.client.head_bucket(Bucket=store.s3.bucket)
        return
    _writable(get_settings().artifacts_dir)


def _writable(folder: Path) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        raise NotReady(f"{folder} is not writable")


def _describe(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)[:300]


async def run_checks(checks: dict[str, Check]) -> dict[str, str]:
    """Each check's outcome, ``ok`` or what went wrong; all run at once, each with a time limit."""
    loop = asyncio.get_running_loop()

    async def one(check: Check) -> str:
        try:
            future = loop.run_in_executor(_checks_pool, check)
            await asyncio.wait_for(future, CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
        except Exception as exc:
            return _describe(exc)
        return "ok"

    outcomes = await asyncio.gather(*(one(check) for check in checks.values()))
    return dict(zip(checks, outcomes, strict=True))


async def readiness(checks: dict[str, Check], *, detail: bool, **extra: object) -> JSONResponse:
    """200 when every check passes; otherwise 503 naming the ones that failed. Why they failed
    (which can name internal hosts) goes only to callers who may read /metrics, and to the log."""
    outcomes = await run_checks(checks)
    failed = [name for name, outcome in outcomes.items() if outcome != "ok"]
    shown = outcomes if detail else {name: "ok" if name not in failed else "failed" for name in outcomes}
    if failed:
        log.warning("not ready: %s", "; ".join(f"{name}: {outcomes[name]}" for name in failed))
        body = {"status": "unavailable", "failed": failed, "checks": shown, **extra}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", "checks": shown, **extra})


def web_checks() -> dict[str, Check]:
    """What the web app needs: the database, Redis when it is the broker, the artifact store.
    (The embedded broker is a folder in the data dir: nothing to reach.)"""
    checks = {"database": check_database, "storage": check_storage}
    if get_settings().redis_url:
        checks["broker"] = check_broker
    return checks
