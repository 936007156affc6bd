"""Metric series for charts, downsampled in the database so that a job with 100k points per
series still loads fast: each series keeps at most about ``max_points`` points, and every
bucket keeps its minimum and its maximum, so spikes and dips stay visible."""

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from app.models import Metric


@dataclass
class Series:
    """One metric's points in step order: step, epoch and value lists of equal length."""

    steps: list[int] = field(default_factory=list)
    epochs: list[float | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    total: int = 0  # points stored for this series
    downsampled: bool = False

    def add(self, step: int, epoch: float | None, value: float) -> None:
        self.steps.append(step)
        self.epochs.append(epoch)
        self.values.append(value)


def job_series(
    session: Session, job_id: str, *, max_points: int = 2000, keys: list[str] | None = None
) -> tuple[int, dict[str, Series]]:
    """(last metric id, {key: series}) for job ``job_id``, as of the last id.

    A live view starts its stream after that id, so it gets every later point exactly once.
    """
    last_id = session.exec(select(func.max(Metric.id)).where(Metric.job_id == job_id)).one() or 0
    scope = [col(Metric.job_id) == job_id, col(Metric.id) <= last_id]
    if keys:
        scope.append(col(Metric.key).in_(keys))
    stats = session.exec(
        select(Metric.key, func.count(), func.min(Metric.step), func.max(Metric.step))
        .where(*scope)
        .group_by(Metric.key)
    ).all()
    series: dict[str, Series] = {}
    for key, count, low, high in stats:
        one = series[key] = Series(total=int(count))
        if count <= max_points:
            rows = session.exec(
                select(Metric.step, Metric.epoch, Metric.value)
                .where(*scope, col(Metric.key) == key)
                .order_by(col(Metric.step), col(Metric.id))
            ).all()
            for step, epoch, value in rows:
                one.add(step, epoch, value)
            continue
        one.downsampled = True
        _buckets(session, one, job_id, int(last_id), key, int(low), int(high), max(1, max_points // 2))
    return int(last_id), series


_EXTREMES = sa.text(
    """
    SELECT step, epoch, value FROM (
        SELECT step, epoch, value,
               ROW_NUMBER() OVER (PARTITION BY bucket ORDER BY value ASC, step ASC) AS lowest,
               ROW_NUMBER() OVER (PARTITION BY bucket ORDER BY value DESC, step ASC) AS highest
        FROM (
            SELECT step, epoch, value, ((step - :low) * :n) / :span AS bucket
            FROM metrics
            WHERE job_id = :job_id AND key = :key AND id <= :last_id
        ) AS bucketed
    ) AS ranked
    WHERE lowest = 1 OR highest = 1
    ORDER BY step
    """
)


def _buckets(
    session: Session, series: Series, job_id: str, last_id: int, key: str, low: int, high: int, n: int
) -> None:
    """Split the steps into ``n`` buckets and keep each bucket's lowest and highest point, at the
    steps where they happened (min/max downsampling: the envelope of the curve survives)."""
    params = {"low": low, "n": n, "span": high - low + 1, "job_id": job_id, "key": key, "last_id": last_id}
    for step, epoch, value in session.connection().execute(_EXTREMES, params):
        series.add(int(step), epoch, float(value))
