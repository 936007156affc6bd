"""Metric series for charts, downsampled in the database so that a job with 100k points per
series still loads fast: each series keeps at most about ``max_points`` points, and every
bucket keeps its minimum and its maximum, so spikes and dips stay visible."""

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, func, select

from app.core.tables import Metric

CACHE_SIZE = 16
_cache: "OrderedDict[tuple[Any, ...], dict[str, Series]]" = OrderedDict()
_cache_lock = threading.Lock()


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
    # Points are only appended (a resumed attempt deletes some, and the count changes): the same
    # last id and counts mean the same series, so a finished job's charts are computed once.
    cache_key = (job_id, int(last_id), max_points, tuple(sorted(keys or [])), tuple(map(tuple, stats)))
    with _cache_lock:
        if cache_key in _cache:
            _cache.move_to_end(cache_key)
            return int(last_id), _cache[cache_key]
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
    if any(one.downsampled for one in series.values()):  # only what was costly to compute
        with _cache_lock:
            _cache[cache_key] = series
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return int(last_id), series


def _buckets(
    session: Session, series: Series, job_id: str, last_id: int, key: str, low: int, high: int, n: int
) -> None:
    """Split the steps into ``n`` buckets and keep each bucket's lowest and highest value.

    One aggregate scan (no sort), served from the (job, key, step, value, epoch) index. The two
    values sit at the bucket's first and last step, in the order that follows the curve (a
    falling curve: the high one first), so the envelope survives and no sawtooth appears; a
    value's step is off by at most one bucket width (``span / n`` steps).
    """
    bucket = (((col(Metric.step) - low) * n) // (high - low + 1)).label("bucket")
    rows = session.exec(
        select(  # type: ignore[call-overload]
            bucket,
            func.min(Metric.step),
            func.max(Metric.step),
            func.min(Metric.value),
            func.max(Metric.value),
            func.avg(Metric.value),
            func.min(Metric.epoch),
            func.max(Metric.epoch),
        )
        .where(col(Metric.job_id) == job_id, col(Metric.key) == key, col(Metric.id) <= last_id)
        .group_by(bucket)
        .order_by(bucket)
    ).all()
    for i, (_, first, last, lowest, highest, mean, first_epoch, last_epoch) in enumerate(rows):
        if first == last or lowest == highest:
            series.add(int(first), first_epoch, float(lowest))
            if first != last:
                series.add(int(last), last_epoch, float(highest))
            continue
        following = rows[i + 1][5] if i + 1 < len(rows) else None
        previous = rows[i - 1][5] if i > 0 else None
        falling = (following is not None and following < mean) or (
            following is None and previous is not None and previous > mean
        )
        first_value, last_value = (highest, lowest) if falling else (lowest, highest)
        series.add(int(first), first_epoch, float(first_value))
        series.add(int(last), last_epoch, float(last_value))
