"""The live part of bench/load.py: N browser-like SSE clients follow one running job while, in
its own process, the worker's JobReporter logs train_loss, learning_rate and grad_norm at a fixed
number of steps per second. Every point should reach every watcher exactly once; the delay of
each delivery is its receive time minus the time the writer called ``metrics()`` for its step.

Run as a script, this module is that writer: ``load_live.py JOB_ID SECONDS RATE OUT``.
"""

import json
import math
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from common import Web

KEYS = ("train_loss", "learning_rate", "grad_norm")


def write_points(job_id: str, seconds: float, rate: float, out: Path) -> None:
    """The worker's side: ``rate`` steps/s for ``seconds``, then the final status; the wall-clock
    time of each step's metrics() call goes to ``out``."""
    from app.core.tables import JobStatus
    from worker.training.reporting import JobReporter

    steps = int(seconds * rate)
    written: dict[int, float] = {}
    start = time.time()
    with JobReporter(job_id, fence=1) as reporter:
        for step in range(1, steps + 1):
            time.sleep(max(0.0, start + step / rate - time.time()))
            written[step] = time.time()
            t = step / steps
            values = {"train_loss": 2.0 / math.sqrt(step), "learning_rate": 2e-4 * (1 - t), "grad_norm": 1.0}
            reporter.metrics(step, 3 * t, values)
            reporter.step(step, steps, 3 * t)
        reporter.set_status(JobStatus.succeeded)
    out.write_text(json.dumps(written))


class Watcher(threading.Thread):
    """One browser tab on the job page: follows the stream, records when each point arrives."""

    def __init__(self, url: str, auth: dict[str, str], connected: threading.Semaphore) -> None:
        super().__init__(daemon=True)
        self.url, self.auth, self.connected = url, auth, connected
        self.received: list[tuple[int, str, int, float]] = []  # (metric id, key, step, receive time)
        self.error: str | None = None
        self.ended = False
        self.started = self.first_message = self.stopped = 0.0

    def run(self) -> None:
        from tests.e2e.support import sse_messages

        self.started = time.time()
        try:
            for message in sse_messages(self.url, read_timeout=20, auth=self.auth):
                now = time.time()
                if not self.first_message:
                    self.connected.release()
                    self.first_message = now
                if message.event == "metrics":
                    self.received += [(p["id"], p["k"], p["s"], now) for p in message.data]
                elif message.event == "end":
                    self.ended = True
                    return
        except Exception as exc:  # reported with the results, not raised in a thread
            self.error = f"{type(exc).__name__}: {exc}"[:120]
        finally:
            self.stopped = time.time()
        if not self.first_message:
            self.connected.release()

    def describe(self) -> str:
        """How the stream went, for a watcher that missed points."""
        end = self.error or ("ended" if self.ended else "still open")
        if not self.first_message:
            return f"no message at all, {end} after {self.stopped - self.started:.0f} s"
        waited = self.first_message - self.started
        return f"first message after {waited:.1f} s, {end} {self.stopped - self.first_message:.0f} s later"


class CpuSampler(threading.Thread):
    """Once a second: CPU seconds used so far by the web process, by this database's Postgres
    backends, and by this process (the watchers)."""

    def __init__(self, web_pid: int, database_url: str) -> None:
        super().__init__(daemon=True)
        self.web = psutil.Process(web_pid)
        self.database_url = database_url
        self.samples: list[tuple[float, float, float, float]] = []  # (time, web, postgres, bench)
        self.stop = threading.Event()
        self._backends: dict[int, float] = {}

    def run(self) -> None:
        import psycopg

        me = psutil.Process()
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            while not self.stop.is_set():
                pids = connection.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ).fetchall()
                self.samples.append((time.time(), _cpu(self.web), self._postgres(pids), _cpu(me)))
                self.stop.wait(1.0)

    def _postgres(self, pids: list[tuple[int]]) -> float:
        for (pid,) in pids:
            with suppress(psutil.Error):  # gone since the query: its last reading stays
                self._backends[pid] = _cpu(psutil.Process(pid))
        return sum(self._backends.values())

    def share(self, start: float, end: float) -> tuple[float, float, float]:
        """Cores used on average between ``start`` and ``end``: (web, postgres, bench)."""
        inside = [s for s in self.samples if start - 1 <= s[0] <= end + 1]
        if len(inside) < 2:
            return 0.0, 0.0, 0.0
        (t0, web0, pg0, me0), (t1, web1, pg1, me1) = inside[0], inside[-1]
        return (web1 - web0) / (t1 - t0), (pg1 - pg0) / (t1 - t0), (me1 - me0) / (t1 - t0)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class LiveResult:
    watchers: int
    steps: int
    connected: int
    complete: int = 0
    delivered: int = 0
    duplicates: int = 0
    missing: int = 0
    delays: list[float] = field(default_factory=list)
    flush: list[float] = field(default_factory=list)
    stream: list[float] = field(default_factory=list)
    cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)
    problems: Counter[str] = field(default_factory=Counter)

    @property
    def expected(self) -> int:
        return self.watchers * self.steps * len(KEYS)


def run_live(
    web: Web, env: dict[str, str], key: str, tmp: Path, *, watchers: int, seconds: float, rate: float
) -> LiveResult:
    """Watchers first (each has its first message, or 10 s passed), then the writer, then wait."""
    from dashboard import make_job

    job_id = make_job(status="running", attempt=1)
    url = f"{web.url}/api/v1/fine_tuning/jobs/{job_id}/stream"
    connected = threading.Semaphore(0)
    threads = [Watcher(url, {"Authorization": f"Bearer {key}"}, connected) for _ in range(watchers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    in_time = sum(connected.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in threads)
    sampler = CpuSampler(web.proc.pid, env["DATABASE_URL"])
    sampler.start()
    out = tmp / f"written-{job_id}.json"
    command = [sys.executable, __file__, job_id, str(seconds), str(rate), str(out)]
    writer = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if writer.returncode != 0:
        sys.exit(f"the writer failed:\n{writer.stderr[-3000:]}")
    deadline = time.monotonic() + 25
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    sampler.stop.set()
    sampler.join()
    written = {int(step): t for step, t in json.loads(out.read_text()).items()}
    result = LiveResult(watchers=watchers, steps=len(written), connected=in_time)
    result.cpu = sampler.share(min(written.values()), max(written.values()))
    tally(result, threads, written, committed_times(job_id))
    return result


def committed_times(job_id: str) -> dict[int, float]:
    """Metric id → its created_at (set in the reporter's transaction, just before the commit)."""
    from sqlmodel import select

    from app.core.db import read_session
    from app.core.tables import Metric

    with read_session() as session:
        rows = session.exec(select(Metric.id, Metric.created_at).where(Metric.job_id == job_id)).all()
    return {int(i or 0): created.timestamp() for i, created in rows}


def tally(
    result: LiveResult, threads: list[Watcher], written: dict[int, float], committed: dict[int, float]
) -> None:
    """Per delivery: the delay and its two parts; per watcher: every point exactly once?"""
    wanted = {(step, k) for step in written for k in KEYS}
    for thread in threads:
        got = Counter((k, step) for _, k, step, _ in thread.received)
        dups = sum(n - 1 for n in got.values())
        missing = len(wanted - {(s, k) for k, s in got})
        result.delivered += len(thread.received)
        result.duplicates += dups
        result.missing += missing
        if dups == 0 and missing == 0:
            result.complete += 1
        else:
            result.problems[f"{missing} missing, {dups} twice; {thread.describe()}"] += 1
        for metric_id, _, step, received in thread.received:
            result.delays.append(received - written[step])
            result.flush.append(committed[metric_id] - written[step])
            result.stream.append(received - committed[metric_id])


if __name__ == "__main__":
    write_points(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
