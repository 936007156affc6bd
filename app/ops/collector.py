"""Job, queue, throughput and worker metrics, read from the database when Prometheus scrapes.

The database owns job state, so gauges computed from it at scrape time are right in every web
process at once (aggregate them with ``max``, not ``sum``, across replicas). A scrape costs a
handful of indexed queries: one GROUP BY over job statuses, the jobs started in the last hour,
the latest throughput points of running jobs, and the workers' rows.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import Session, col, func, select

from app.core import metric_names
from app.core.db import read_session
from app.core.presence import ONLINE_WITHIN
from app.core.tables import WAITING, Job, JobStatus, WorkerRecord
from app.core.tables.job import Metric as MetricPoint
from app.core.timeutil import UTCDateTime, utcnow

log = logging.getLogger(__name__)
RECENT = timedelta(hours=1)  # "recently started" for the queue-wait histogram; workers listed
WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
BYTES_PER_GIB = 1 << 30


@dataclass
class Snapshot:
    """What one scrape read from the database."""

    by_status: dict[str, int] = field(default_factory=dict)
    oldest_waiting: datetime | None = None
    waits: list[float] = field(default_factory=list)  # created → started, jobs started lately
    throughput: list[tuple[str, str, float]] = field(default_factory=list)  # (worker, key, value)
    workers: list[WorkerRecord] = field(default_factory=list)


def _statuses(session: Session, snapshot: Snapshot) -> None:
    # A retrying job waits from the time its next attempt is due, a queued one from its creation.
    waiting_since = func.min(
        func.coalesce(col(Job.next_attempt_at), col(Job.created_at)), type_=UTCDateTime()
    )
    rows = session.exec(select(col(Job.status), func.count(), waiting_since).group_by(col(Job.status)))
    for status, count, since in rows:
        snapshot.by_status[JobStatus(status).value] = int(count)
        if status in WAITING and since is not None:
            snapshot.oldest_waiting = min(since, snapshot.oldest_waiting or since)


def _waits(session: Session, snapshot: Snapshot, now: datetime) -> None:
    query = select(col(Job.created_at), col(Job.started_at)).where(col(Job.started_at) >= now - RECENT)
    for created, started in session.exec(query):
        if started is not None:
            snapshot.waits.append(max(0.0, (started - created).total_seconds()))


def _throughput(session: Session, snapshot: Snapshot) -> None:
    """The latest steps/s and tokens/s of each running job (labelled by its worker, not its id)."""
    running_jobs = select(col(Job.id), col(Job.worker)).where(col(Job.status) == JobStatus.running)
    running = dict(session.exec(running_jobs).all())
    if not running:
        return
    keys = (metric_names.STEP_TIME, metric_names.TOKENS_PER_SECOND)
    newer = sa.orm.aliased(MetricPoint)
    latest_step = (
        select(func.max(newer.step))
        .where(newer.job_id == MetricPoint.job_id, newer.key == MetricPoint.key)
        .scalar_subquery()
    )
    query = (
        select(col(MetricPoint.job_id), col(MetricPoint.key), col(MetricPoint.value))
        .where(col(MetricPoint.job_id).in_(list(running)), col(MetricPoint.key).in_(keys))
        .where(col(MetricPoint.step) == latest_step)
        .order_by(col(MetricPoint.id))
    )
    latest = {(job_id, key): value for job_id, key, value in session.exec(query)}
    for (job_id, key), value in latest.items():
        worker = running.get(job_id) or "unknown"
        if key == metric_names.STEP_TIME:
            if value > 0:
                snapshot.throughput.append((worker, "steps", 1.0 / value))
        else:
            snapshot.throughput.append((worker, "tokens", value))


def read_snapshot(session: Session) -> Snapshot:
    """Everything the metrics need, read in one session."""
    now = utcnow()
    snapshot = Snapshot()
    _statuses(session, snapshot)
    _waits(session, snapshot, now)
    _throughput(session, snapshot)
    query = select(WorkerRecord).where(
        col(WorkerRecord.stopped_at).is_(None), col(WorkerRecord.heartbeat_at) >= now - RECENT
    )
    snapshot.workers = list(session.exec(query.order_by(col(WorkerRecord.name))))
    return snapshot


def _histogram(name: str, doc: str, values: Sequence[float]) -> GaugeHistogramMetricFamily:
    buckets = [(str(bound), float(sum(v <= bound for v in values))) for bound in WAIT_BUCKETS]
    buckets.append(("+Inf", float(len(values))))
    return GaugeHistogramMetricFamily(name, doc, buckets=buckets, gsum_value=sum(values))


def families(snapshot: Snapshot, now: datetime) -> Iterable[Metric]:
    """The snapshot as Prometheus metric families."""
    jobs = GaugeMetricFamily("tunedeck_jobs", "Jobs by status", labels=["status"])
    for status in JobStatus:
        jobs.add_metric([status.value], snapshot.by_status.get(status.value, 0))
    yield jobs
    waiting = sum(snapshot.by_status.get(s.value, 0) for s in WAITING)
    doc = "Jobs waiting for a worker (queued or retrying)"
    yield GaugeMetricFamily("tunedeck_queue_length", doc, waiting)
    oldest = snapshot.oldest_waiting
    age = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    yield GaugeMetricFamily(
        "tunedeck_queue_oldest_wait_seconds", "How long the longest-waiting queued job has waited", age
    )
    doc = f"Queue wait (created to first start) of jobs started in the last {RECENT}"
    yield _histogram("tunedeck_queue_wait_seconds", doc, snapshot.waits)
    doc = "Latest optimizer steps/s of the job each worker runs"
    steps = GaugeMetricFamily("tunedeck_training_steps_per_second", doc, labels=["worker"])
    doc = "Latest trained tokens/s of the job each worker runs"
    tokens = GaugeMetricFamily("tunedeck_training_tokens_per_second", doc, labels=["worker"])
    for worker, kind, value in snapshot.throughput:
        (steps if kind == "steps" else tokens).add_metric([worker], value)
    yield steps
    yield tokens
    yield from _worker_families(snapshot.workers, now)


def _worker_families(workers: list[WorkerRecord], now: datetime) -> Iterable[Metric]:
    age = GaugeMetricFamily(
        "tunedeck_worker_heartbeat_age_seconds",
        f"Seconds since each worker's last heartbeat (workers seen in the last {RECENT}, not signed off)",
        labels=["worker"],
    )
    memory = GaugeMetricFamily(
        "tunedeck_worker_device_memory_bytes",
        "Memory of each worker's device (per GPU; RAM on CPU workers)",
        labels=["worker"],
    )
    online = 0
    for worker in workers:
        seconds = max(0.0, (now - worker.heartbeat_at).total_seconds())
        online += seconds <= ONLINE_WITHIN.total_seconds()
        age.add_metric([worker.name], seconds)
        if worker.device_memory_gib is not None:
            memory.add_metric([worker.name], worker.device_memory_gib * BYTES_PER_GIB)
    yield age
    yield memory
    yield GaugeMetricFamily("tunedeck_workers_online", "Workers that sent a heartbeat lately", online)


class DatabaseCollector(Collector):
    """Reads a snapshot per scrape; a database that does not answer gives tunedeck_database_up 0."""

    def collect(self) -> Iterable[Metric]:
        try:
            with read_session() as session:
                snapshot = read_snapshot(session)
        except Exception as exc:
            log.warning("metrics: the database did not answer (%s: %s)", type(exc).__name__, exc)
            yield GaugeMetricFamily("tunedeck_database_up", "The database answered this scrape", 0)
            return
        yield GaugeMetricFamily("tunedeck_database_up", "The database answered this scrape", 1)
        yield from families(snapshot, utcnow())
