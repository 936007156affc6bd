"""Everything the worker tells the database about a job: status, progress, metrics, events."""

import time
from typing import Any

from sqlmodel import col, select, update

from app import metric_names
from app.db import read_session, session_scope
from app.ids import new_id
from app.jobs.monitor import Alert
from app.jobs.service import add_event
from app.models import Checkpoint, Job, JobStatus, Metric
from app.timeutil import utcnow

PROGRESS_WRITE_INTERVAL_S = 0.5


class JobReporter:
    """Writes one job's progress in short transactions; answers whether a cancel was asked."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._last_progress_write = 0.0

    def event(self, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        with session_scope() as session:
            add_event(session=session, job_id=self.job_id, message=message, level=level, data=data)

    def set_status(self, status: JobStatus, **fields: Any) -> None:
        with session_scope() as session:
            session.exec(update(Job).where(col(Job.id) == self.job_id).values(status=status, **fields))

    def cancel_requested(self) -> bool:
        with read_session() as session:
            job = session.get(Job, self.job_id)
            return job is None or job.cancel_requested

    def step(self, step: int, total_steps: int, epoch: float | None) -> bool:
        """Record progress (throttled) and return True if the job should stop now."""
        now = time.monotonic()
        if now - self._last_progress_write >= PROGRESS_WRITE_INTERVAL_S or step >= total_steps:
            self._last_progress_write = now
            with session_scope() as session:
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
        with session_scope() as session:
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
        with session_scope() as session:
            event = add_event(
                session=session, job_id=self.job_id, message=alert.message, level="warning", data=data
            )
            event.type = "alert"

    def prune_checkpoints(self, *, keep_last: int) -> list[str]:
        """Drop all but the last ``keep_last`` checkpoints and the best one; return their keys."""
        with session_scope() as session:
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
        with session_scope() as session:
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
