"""Everything the worker tells the database about a job: status, progress, metrics, events."""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, delete, select, update

from app.core import metric_names
from app.core.db import read_session, session_scope
from app.core.evalruns import queue_job_evals
from app.core.events import add_event
from app.core.ids import new_id
from app.core.outbox import emit, emit_finished
from app.core.scheduling import charge
from app.core.storage import get_store
from app.core.tables import ACTIVE, Checkpoint, Job, JobStatus, Metric, WebhookEvent
from app.core.timeutil import utcnow
from worker.training.monitor import Alert

FLUSH_INTERVAL_S = 0.2  # metric points, progress and events reach the database in batches this often
QUICK_BUSY_TIMEOUT_MS = 500  # the background writer does not wait long on a locked SQLite: it retries
MAX_RETRY_DELAY_S = 1.0  # between tries of a batch the database refused
FLUSH_DEADLINE_S = 300.0  # a synchronous flush (before a checkpoint or the final status) waits this long

log = logging.getLogger(__name__)


def _alert_data(item: dict[str, Any]) -> dict[str, Any]:
    """A webhook's ``alert``: what the job page's banner shows."""
    return {"alert": {"message": item["message"], **(item["data"] or {})}}


class FencedOff(Exception):
    """This attempt no longer owns the job (its lease expired and the job moved on)."""


class JobCancelled(Exception):
    """Cancel was requested in a stage the Trainer cannot stop by itself (loading, evaluating)."""

    def __init__(self, when: str) -> None:
        super().__init__(when)
        self.when = when


class JobReporter:
    """Writes one attempt's progress; every transaction is refused once the attempt is fenced off.

    Metric points, step progress and events are buffered and written by a background thread in
    one short transaction every ``FLUSH_INTERVAL_S``. When the database is busy (a long SQLite
    write lock, a Postgres restart) the batch stays buffered and is retried with backoff while
    training goes on. Checkpoints and status changes flush the buffer first and are synchronous.
    Use as a context manager: entering starts the writer, leaving flushes what is left.
    """

    def __init__(self, job_id: str, fence: int, lost: threading.Event | None = None) -> None:
        self.job_id = job_id
        self.fence = fence
        self.lost = lost or threading.Event()
        self._points: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        self._job_values: dict[str, Any] = {}
        self._buffer_lock = threading.Lock()  # guards the three buffers above
        self._flush_lock = threading.Lock()  # one flush at a time keeps points in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy_since: float | None = None

    def __enter__(self) -> "JobReporter":
        self._thread = threading.Thread(target=self._writer, name=f"metrics-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=FLUSH_DEADLINE_S)
        if not self.fenced:
            try:
                self.flush()
            except FencedOff:
                pass
            except Exception:
                log.exception("job %s: could not write the last metric points", self.job_id)

    @property
    def fenced(self) -> bool:
        return self.lost.is_set()

    @contextmanager
    def _write(self, *, quick: bool = False) -> Iterator[Session]:
        """A transaction that first proves this attempt still owns the job (the fencing token)."""
        with session_scope() as session:
            if quick and session.get_bind().dialect.name == "sqlite":
                # reset to the engine's default when the connection is next checked out (app.core.db)
                session.connection().exec_driver_sql(f"PRAGMA busy_timeout={QUICK_BUSY_TIMEOUT_MS}")
            owned = session.exec(
                update(Job)
                .where(col(Job.id) == self.job_id, col(Job.attempt) == self.fence)
                .values(heartbeat_at=utcnow())
            )
            if owned.rowcount != 1:
                self.lost.set()
                raise FencedOff(self.job_id)
            yield session

    # -- buffered: written by the background thread ------------------------------------------

    def event(self, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        with self._buffer_lock:
            self._events.append({"message": message, "level": level, "data": data, "type": "message"})

    def step(self, step: int, total_steps: int, epoch: float | None) -> bool:
        """Record progress and return True if the job should stop now (cancelled or fenced off)."""
        if self.fenced:
            return True
        with self._buffer_lock:
            self._job_values.update(step=step, total_steps=total_steps, epoch=epoch)
        return self.cancel_requested()

    def metrics(self, step: int, epoch: float | None, values: dict[str, float]) -> None:
        """Append metric points and keep the job's latest values for list pages."""
        if not values:
            return
        latest: dict[str, Any] = {}
        if metric_names.TRAIN_LOSS in values:
            latest["train_loss"] = values[metric_names.TRAIN_LOSS]
        if metric_names.VALID_LOSS in values:
            latest["valid_loss"] = values[metric_names.VALID_LOSS]
        if metric_names.TOKENS_SEEN in values:
            latest["trained_tokens"] = int(values[metric_names.TOKENS_SEEN])
        with self._buffer_lock:
            self._points.extend(
                {"key": key, "step": step, "epoch": epoch, "value": value} for key, value in values.items()
            )
            self._job_values.update(latest)

    def alert(self, alert: Alert) -> None:
        """A health alert: an event of type "alert" carrying the remedies, shown as a banner."""
        data = {
            "kind": alert.kind,
            "step": alert.step,
            "remedies": list(alert.remedies),
            "fatal": alert.fatal,
        }
        with self._buffer_lock:
            self._events.append({"message": alert.message, "level": "warning", "data": data, "type": "alert"})

    def flush(self) -> None:
        """Write everything buffered now, retrying while the database is busy (up to a deadline)."""
        deadline = time.monotonic() + FLUSH_DEADLINE_S
        delay = 0.05
        while True:
            try:
                self._flush_once(quick=False)
                return
            except OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _writer(self) -> None:
        delay = FLUSH_INTERVAL_S
        while not self._stop.wait(delay):
            try:
                self._flush_once(quick=True)
                delay = FLUSH_INTERVAL_S
            except FencedOff:
                return
            except OperationalError as exc:  # busy or unreachable: keep the batch, retry with backoff
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
                log.warning(
                    "job %s: metric write delayed (%s); retrying in %.1fs", self.job_id, exc.orig, delay
                )
            except Exception:
                log.exception("job %s: metric write failed; retrying", self.job_id)
                delay = min(delay * 2, MAX_RETRY_DELAY_S)

    def _flush_once(self, *, quick: bool) -> None:
        with self._flush_lock:
            with self._buffer_lock:
                points, events, values = self._points, self._events, self._job_values
                self._points, self._events, self._job_values = [], [], {}
            if not (points or events or values):
                return
            try:
                with self._write(quick=quick) as session:
                    session.add_all(Metric(job_id=self.job_id, **point) for point in points)
                    for item in events:
                        event = add_event(
                            session=session,
                            job_id=self.job_id,
                            message=item["message"],
                            level=item["level"],
                            data=item["data"],
                        )
                        event.type = item["type"]
                        if item["type"] == "alert":  # the hooks hear of it in this transaction
                            emit(session, self._job(session), WebhookEvent.job_alert, _alert_data(item))
                    if values:
                        session.exec(update(Job).where(col(Job.id) == self.job_id).values(**values))
            except OperationalError:
                with self._buffer_lock:  # put the batch back in front of what came since
                    self._points[:0] = points
                    self._events[:0] = events
                    self._job_values = {**values, **self._job_values}
                if self._busy_since is None:
                    self._busy_since = time.monotonic()
                raise
            except FencedOff:
                with self._buffer_lock:
                    self._points, self._events, self._job_values = [], [], {}
                raise
            if self._busy_since is not None:
                waited = time.monotonic() - self._busy_since
                self._busy_since = None
                log.warning(
                    "job %s: %d metric points written after the database was busy for %.1fs",
                    self.job_id,
                    len(points),
                    waited,
                )

    def _job(self, session: Session) -> Job:
        job = session.get(Job, self.job_id, populate_existing=True)
        assert job is not None
        return job

    # -- synchronous ----------------------------------------------------------------------

    def set_status(self, status: JobStatus, **fields: Any) -> None:
        """Change the status; an ending also queues the webhooks' deliveries, in the same transaction."""
        self.flush()
        with self._write() as session:
            if status.is_terminal:  # the attempt's time × devices, in the transaction that ends it
                fields |= charge(self._job(session), utcnow())
            session.exec(update(Job).where(col(Job.id) == self.job_id).values(status=status, **fields))
            if status.is_terminal:
                job = self._job(session)
                emit_finished(session, job)
                if status == JobStatus.succeeded and job.fine_tuned_model:
                    queue_job_evals(session, get_store(), job, job.fine_tuned_model, "final adapter")

    def cancel_requested(self) -> bool:
        """Whether to stop now: cancel was asked for, or the job moved on without this attempt
        (handed back by `tunedeck run` shutting down, or re-queued): then it is fenced off too."""
        with read_session() as session:
            job = session.get(Job, self.job_id)
            if job is not None and (job.attempt != self.fence or job.status not in ACTIVE):
                self.lost.set()
            return job is None or job.cancel_requested or self.fenced

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
        self.flush()
        with self._write() as session:
            session.exec(delete(Metric).where(col(Metric.job_id) == self.job_id, col(Metric.step) > step))

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
        self.flush()  # the checkpoint row records the latest losses
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
            # the job's evals grade it on the short lane, while training goes on (committed with it)
            queue_job_evals(session, get_store(), job, f"{job.model}:{job.id}:ckpt-{step}", f"step {step}")
