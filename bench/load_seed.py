"""Seed a fresh Postgres database for bench/load.py: users with API keys, base models, datasets,
and many jobs with their events, checkpoints and metric points, written with COPY.

Jobs are spread over 90 days, most finished (succeeded, some failed or cancelled), the newest
few running or waiting. Every job that ran logs train_loss, learning_rate and grad_norm per step
and valid_loss every 10th step; a few "big" jobs have ``big_points`` points each, the others
share what is left of ``metric_rows``.
"""

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import psycopg
from psycopg.types.json import Json

MODELS = ("smollm2-135m-instruct", "qwen2.5-0.5b-instruct", "llama-3.2-1b-instruct")
MEMBERS = ("alice", "bob", "carol", "dave")
DATASETS = 40
DAYS = 90
STEP_SECONDS = 2.0
EVAL_EVERY = 10
ROWS_PER_STEP = 3 + 1 / EVAL_EVERY
ACTIVE = {"running": 8, "validating_files": 2, "queued": 60, "retrying": 4}  # the newest jobs
FINISHED = {"succeeded": 0.85, "failed": 0.08, "cancelled": 0.07}


@dataclass
class Plan:
    """One job to write: what it is, and how many steps it logged."""

    id: str
    status: str
    created_at: datetime
    model: str
    training_file: str
    owner: tuple[int, str]
    steps: int = 0
    total_steps: int = 0
    big: bool = False


@dataclass
class Seeded:
    """What the bench needs to know about the data: the admin's key and a few job ids."""

    key: str
    short_job: str
    big_job: str
    later_cursor: str  # the job the `after` cursor of a later jobs-list page starts from
    counts: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)


def make_accounts() -> tuple[str, list[tuple[int, str]]]:
    """An admin and a few members (each with an API key); returns the admin's key and (id, name)."""
    from sqlmodel import select

    from app.core.db import read_session
    from app.core.tables import User
    from tests.accounts import make_user

    key = make_user("admin")
    for name in MEMBERS:
        make_user(name, "member")
    with read_session() as session:
        users = session.exec(select(User.id, User.username)).all()
    return key, [(int(i or 0), name) for i, name in users]


def make_catalog(rng: random.Random, owners: list[tuple[int, str]]) -> list[str]:
    """Base model records and dataset rows (only what the pages show); returns the dataset ids."""
    from app.core.db import session_scope
    from app.core.ids import new_id
    from app.core.tables import BaseModelRecord, DatasetFile

    ids = [new_id("file") for _ in range(DATASETS)]
    with session_scope() as session:
        for model in MODELS:
            session.add(BaseModelRecord(id=model, path=f"/models/{model}", architecture="LlamaForCausalLM"))
        for n, file_id in enumerate(ids):
            rows = rng.randint(200, 20_000)
            owner = rng.choice(owners)
            session.add(
                DatasetFile(
                    id=file_id,
                    filename=f"dataset-{n:02d}.jsonl",
                    bytes=rows * 600,
                    format=rng.choice(("instruction", "chat")),
                    rows=rows,
                    duplicates_removed=0,
                    train_rows=int(rows * 0.9),
                    validation_rows=rows - int(rows * 0.9),
                    validation_split=0.1,
                    split_seed=42,
                    owner_id=owner[0],
                    owner=owner[1],
                )
            )
    return ids


def plan_jobs(
    rng: random.Random,
    *,
    jobs: int,
    metric_rows: int,
    big_jobs: int,
    big_points: int,
    files: list[str],
    owners: list[tuple[int, str]],
) -> list[Plan]:
    """Oldest first: finished jobs, then the newest ones running or waiting."""
    from app.core.ids import new_id
    from app.core.timeutil import utcnow

    now = utcnow()
    ages = sorted((rng.uniform(0, DAYS * 86400) for _ in range(jobs)), reverse=True)
    active = [status for status, n in ACTIVE.items() for _ in range(n)][: jobs // 10]
    rng.shuffle(active)
    finished = rng.choices(list(FINISHED), weights=list(FINISHED.values()), k=jobs - len(active))
    plans = [
        Plan(
            id=new_id("ftjob"),
            status=status,
            created_at=now - timedelta(seconds=age),
            model=rng.choice(MODELS),
            training_file=rng.choice(files),
            owner=rng.choice(owners),
        )
        for age, status in zip(ages, finished + active, strict=True)
    ]
    _plan_steps(rng, plans, metric_rows=metric_rows, big_jobs=big_jobs, big_points=big_points)
    return plans


def _plan_steps(
    rng: random.Random, plans: list[Plan], *, metric_rows: int, big_jobs: int, big_points: int
) -> None:
    succeeded = [p for p in plans if p.status == "succeeded"]
    for plan in rng.sample(succeeded, min(big_jobs, len(succeeded))):
        plan.big, plan.steps = True, round(big_points / ROWS_PER_STEP)
        plan.total_steps = plan.steps
    ran = [p for p in plans if not p.big and p.status not in ("queued", "retrying", "validating_files")]
    left = max(0, metric_rows - sum(round(p.steps * ROWS_PER_STEP) for p in plans if p.big))
    mean_steps = left / ROWS_PER_STEP / max(1, len(ran))
    for plan in ran:  # a job that stopped early logged part of its planned steps
        plan.steps = max(1, round(mean_steps * rng.uniform(0.4, 1.6)))
        done = plan.status == "succeeded"
        plan.total_steps = plan.steps if done else round(plan.steps / rng.uniform(0.1, 0.95))


def job_row(plan: Plan, rng: random.Random) -> Any:
    """The Job as the worker would have left it."""
    from app.core.tables import Job, JobStatus
    from app.core.timeutil import utcnow

    started = plan.created_at + timedelta(seconds=rng.uniform(5, 900))
    ran = plan.status not in ("queued", "retrying")
    job = Job(
        id=plan.id,
        model=plan.model,
        training_file=plan.training_file,
        suffix=rng.choice((None, "support", "sql", "summaries")),
        hyperparameters={"r": 8, "lora_alpha": 16, "learning_rate": 2e-4, "epochs": 3},
        status=JobStatus(plan.status),
        created_at=plan.created_at,
        dispatched_at=plan.created_at,
        started_at=started if ran else None,
        attempt=1 if ran else 0,
        step=plan.steps,
        total_steps=plan.total_steps or None,
        epoch=3 * plan.steps / plan.total_steps if plan.total_steps else None,
        train_loss=0.6 + rng.random() if plan.steps else None,
        owner_id=plan.owner[0],
        owner=plan.owner[1],
        private=rng.random() < 0.1,
        priority=rng.choice((5, 5, 5, 3, 7)),
    )
    if plan.status in FINISHED:
        job.finished_at = started + timedelta(seconds=plan.steps * STEP_SECONDS + 30)
        job.cancel_requested = plan.status == "cancelled"
    if plan.status == "succeeded":
        job.fine_tuned_model = f"ft:{plan.model}:{job.suffix or 'tunedeck'}:{plan.id[-8:]}"
        job.adapter_key = f"jobs/{plan.id}/adapter"
        job.valid_loss = (job.train_loss or 0) + 0.05
    elif plan.status == "failed":
        job.error = {"code": "training_error", "message": "CUDA out of memory", "param": None}
    elif plan.status in ("running", "validating_files"):
        job.heartbeat_at = utcnow()
        job.lease_expires_at = utcnow() + timedelta(seconds=60)
        job.worker = f"gpu-{rng.randint(1, 8):02d}"
    return job


def _value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return Json(value) if isinstance(value, dict | list) else value


def copy_jobs(cursor: psycopg.Cursor[Any], plans: list[Plan], rng: random.Random) -> int:
    from app.core.tables import Job

    columns = [c.name for c in Job.__table__.columns]  # type: ignore[attr-defined]
    with cursor.copy(f"COPY jobs ({', '.join(columns)}) FROM STDIN") as copy:
        for plan in plans:
            job = job_row(plan, rng)
            copy.write_row([_value(getattr(job, name)) for name in columns])
    return len(plans)


def events_of(plan: Plan, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """(job_id, created_at, level, type, message, data): what a job's log says."""
    at = plan.created_at
    yield plan.id, at, "info", "message", f"Created fine-tuning job {plan.id} on {plan.model}", None
    if plan.status in ("queued", "retrying"):
        return
    yield plan.id, at, "info", "message", "Attempt 1 started on a worker", None
    every = max(1, plan.steps // (300 if plan.big else rng.randint(2, 5)))
    for step in range(every, plan.steps + 1, every):
        at = plan.created_at + timedelta(seconds=step * STEP_SECONDS)
        data = {"step": step, "train_loss": round(rng.uniform(0.5, 2.5), 4)}
        yield plan.id, at, "info", "metrics", f"Step {step}/{plan.total_steps}", data
    if plan.status in FINISHED:
        level = "error" if plan.status == "failed" else "info"
        yield plan.id, at, level, "message", f"Job {plan.status}", None


def copy_events(cursor: psycopg.Cursor[Any], plans: list[Plan], rng: random.Random) -> int:
    n = 0
    with cursor.copy("COPY job_events (job_id, created_at, level, type, message, data) FROM STDIN") as copy:
        for plan in plans:
            for row in events_of(plan, rng):
                copy.write_row((*row[:5], Json(row[5]) if row[5] is not None else None))
                n += 1
    return n


def copy_checkpoints(cursor: psycopg.Cursor[Any], plans: list[Plan], rng: random.Random) -> int:
    from app.core.ids import new_id

    n = 0
    columns = "id, job_id, step, epoch, train_loss, artifact_key, created_at"
    with cursor.copy(f"COPY checkpoints ({columns}) FROM STDIN") as copy:
        for plan in plans:
            if plan.status != "succeeded":
                continue
            saves = 30 if plan.big else rng.randint(1, 3)
            for i in range(1, saves + 1):
                step = plan.steps * i // saves
                at = plan.created_at + timedelta(seconds=step * STEP_SECONDS)
                key = f"jobs/{plan.id}/checkpoints/step-{step}"
                copy.write_row(
                    (new_id("ftckpt"), plan.id, step, 3 * i / saves, rng.uniform(0.5, 1.5), key, at)
                )
                n += 1
    return n


def points_of(plan: Plan, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """(job_id, key, step, epoch, value, created_at), step-major, as the worker writes them."""
    total, start = max(1, plan.total_steps), plan.created_at.timestamp()
    tz = plan.created_at.tzinfo
    for step in range(1, plan.steps + 1):
        t = step / total
        at = datetime.fromtimestamp(start + step * STEP_SECONDS, tz)
        epoch = 3 * t
        loss = 2.2 * math.exp(-3 * t) + 0.5 + rng.gauss(0, 0.05)
        yield plan.id, "train_loss", step, epoch, loss, at
        yield plan.id, "learning_rate", step, epoch, 2e-4 * min(1.0, t / 0.05) * (1 - t), at
        yield plan.id, "grad_norm", step, epoch, abs(rng.gauss(1.0, 0.3)), at
        if step % EVAL_EVERY == 0:
            yield plan.id, "valid_loss", step, epoch, loss + 0.05, at


def copy_metrics(cursor: psycopg.Cursor[Any], plans: list[Plan], rng: random.Random) -> int:
    n = 0
    with cursor.copy("COPY metrics (job_id, key, step, epoch, value, created_at) FROM STDIN") as copy:
        for plan in plans:
            for row in points_of(plan, rng):
                copy.write_row(row)
                n += 1
    return n


def seed(
    url: str, *, jobs: int, metric_rows: int, big_jobs: int, big_points: int, random_seed: int = 8
) -> Seeded:
    """Fill the (migrated, empty) database at ``url``; prints how long each part took."""
    rng = random.Random(random_seed)
    key, owners = make_accounts()
    files = make_catalog(rng, owners)
    plans = plan_jobs(
        rng,
        jobs=jobs,
        metric_rows=metric_rows,
        big_jobs=big_jobs,
        big_points=big_points,
        files=files,
        owners=owners,
    )
    counts: dict[str, int] = {}
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        for name, write in (
            ("jobs", copy_jobs),
            ("job_events", copy_events),
            ("checkpoints", copy_checkpoints),
            ("metrics", copy_metrics),
        ):
            start = time.perf_counter()
            counts[name] = write(cursor, plans, rng)
            connection.commit()
            print(f"  {name:<12} {counts[name]:>10,} rows  {time.perf_counter() - start:6.1f} s", flush=True)
    return describe(plans, key, counts)


def describe(plans: list[Plan], key: str, counts: dict[str, int]) -> Seeded:
    big = next(p for p in reversed(plans) if p.big) if any(p.big for p in plans) else plans[-1]
    short = next(p for p in reversed(plans) if p.status == "succeeded" and not p.big)
    newest_first = sorted(plans, key=lambda p: (p.created_at, p.id), reverse=True)
    statuses: dict[str, int] = {}
    for plan in plans:
        statuses[plan.status] = statuses.get(plan.status, 0) + 1
    return Seeded(
        key=key,
        short_job=short.id,
        big_job=big.id,
        later_cursor=newest_first[len(plans) // 2].id,
        counts=counts,
        statuses=statuses,
    )
