"""Everything the worker tells the database about a job: status, progress, metrics, events."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlmodel import Session, col, delete, select, update

from app import metric_names
from app.db import read_session, session_scope
from app.ids import new_id
from app.jobs.monitor import Alert
from app.jobs.service import add_event
from app.models import Checkpoint, Job, JobStatus, Metric
from app.timeutil import utcnow

PROGRESS_WRITE_INTERVAL_S = 0.5


class FencedOff(Exception):
    """This attempt no longer owns the job (its lease expired and the job moved on)."""


class JobReporter:
    """Writes one attempt's progress in short transactions, each refused once the attempt is fenced off."""

    def __init__(self, job_id: str, fence: int, lost: threading.Event | None = None) -> None:
        self.job_id = job_id
        self.fence = fence
        self.lost = lost or threading.Event()
        self._last_progress_write = 0.0

    @property
    def fenced(self) -> bool:
        return self.lost.is_set()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A transaction that first proves this attempt still owns the job (the fencing token)."""
        with session_scope() as session:
            owned = session.exec(
                update(Job)
                .where(col(Job.id) == self.job_id, col(Job.attempt) == self.fence)
                .values(heartbeat_at=utcnow())
            )
            if owned.rowcount != 1:
                self.lost.set()
                raise FencedOff(self.job_id)
            yield session

    def event(self, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        with self._write() as session:
            add_event(session=session, job_id=self.job_id, message=message, level=level, data=data)

    def set_status(self, status: JobStatus, **fields: Any) -> None:
        with self._write() as session:
            session.exec(update(Job).where(col(Job.id) == self.job_id).values(status=status, **fields))

    def cancel_requested(self) -> bool:
        with read_session() as session:
            job = session.get(Job, self.job_id)
            return job is None or job.cancel_requested

    def latest_checkpoint(self) -> Checkpoint | None:
        with read_session() as session:
            query = (
                select(Checkpoint)
                .where(Checkpoint.job_id == self.job_id)
                .order_by(col(Checkpoint.step).desc())
            )
            return session.exec(query).first()

    def drop_points_after(self, step: int) -> None:
        """Forget metric points a dead attempt wrote after ``step``: the resumed run writes them again."""
        with self._write() as session:
            session.exec(delete(Metric).where(col(Metric.job_id) == self.job_id, col(Metric.step) > step))

    def step(self, step: int, total_steps: int, epoch: float | None) -> bool:
        """Record progress (throttled) and return True if the job should stop now."""
        if self.fenced:
            return True
        now = time.monotonic()
        if now - self._last_progress_write >= PROGRESS_WRITE_INTERVAL_S or step >= total_steps:
            self._last_progress_write = now
            with self._write() as session:
                values = {
                    "step": step,
                    "total_steps": total_steps,
                    "epoch": epoch,
                    "heartbeat_at": utcnow(),
                }
                session.exec(update(Job).where(col(Job.id) == self.job_id).values(**values))
        return self.cancel_requested()

    def metrics(self, step: int, epoch: float | None, values: dict[str, float]) -> None:
        """Append metric points and keep the job's latest values for list pages."""
        if not values:
            return
        with self._write() as session:
            session.add_all(
                Metric(job_id=self.job_id, key=key, step=step, epoch=epoch, value=value)
                for key, value in values.items()
            )
            latest: dict[str, Any] = {"heartbeat_at": utcnow()}
            if metric_names.TRAIN_LOSS in values:
                latest["train_loss"] = values[metric_names.TRAIN_LOSS]
            if metric_names.VALID_LOSS in values:
                latest["valid_loss"] = values[metric_names.VALID_LOSS]
            if metric_names.TOKENS_SEEN in values:
                latest["trained_tokens"] = int(values[metric_names.TOKENS_SEEN])
            session.exec(update(Job).where(col(Job.id) == self.job_id).values(**latest))

    def alert(self, alert: Alert) -> None:
        """A health alert: an event of type "alert" carrying the remedies, shown as a banner."""
        data = {
            "kind": alert.kind,
            "step": alert.step,
            "remedies": list(alert.remedies),
            "fatal": alert.fatal,
        }
        with self._write() as session:
            event = add_event(
                session=session, job_id=self.job_id, message=alert.message, level="warning", data=data
            )
            event.type = "alert"

    def prune_checkpoints(self, *, keep_last: int) -> list[str]:
        """Drop all but the last ``keep_last`` checkpoints and the best one; return their keys."""
        with self._write() as session:
            query = (
                select(Checkpoint)
                .where(Checkpoint.job_id == self.job_id)
                .order_by(col(Checkpoint.step).desc())
            )
            checkpoints = list(session.exec(query).all())
            keep = {c.id for c in checkpoints[:keep_last]}
            scored = [c for c in checkpoints if c.valid_loss is not None]
            if scored:
                keep.add(min(scored, key=lambda c: (c.valid_loss, -c.step)).id)
            removed = [c for c in checkpoints if c.id not in keep]
            for checkpoint in removed:
                session.delete(checkpoint)
            return [c.artifact_key for c in removed]

    def best_checkpoint(self) -> Checkpoint | None:
        """The checkpoint with the lowest validation loss (latest on ties)."""
        with read_session() as session:
            query = (
                select(Checkpoint)
                .where(Checkpoint.job_id == self.job_id, col(Checkpoint.valid_loss).is_not(None))
                .order_by(col(Checkpoint.valid_loss), col(Checkpoint.step).desc())
            )
            return session.exec(query).first()

    def checkpoint(self, *, step: int, epoch: float | None, artifact_key: str) -> None:
        with self._write() as session:
            job = session.get(Job, self.job_id)
            assert job is not None
            session.add(
                Checkpoint(
                    id=new_id("ftckpt"),
                    job_id=self.job_id,
                    step=step,
                    epoch=epoch,
                    artifact_key=artifact_key,
                    train_loss=job.train_loss,
                    valid_loss=job.valid_loss,
                )
            )
            add_event(session=session, job_id=self.job_id, message=f"Saved checkpoint at step {step}")
