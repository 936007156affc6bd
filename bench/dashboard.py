"""Dashboard responsiveness, measured in one run against a real `tunedeck web` process:

1. the job page and what its script loads, for a job with 100k points per series (and 1k, to show
   how it scales): the HTML page, the min/max-downsampled /series the charts load, and, for
   contrast, /metrics?limit=100000 (raw points, not downsampled);
2. the delay from a metric point written by the worker (the real JobReporter, in its own process)
   to the SSE event reaching a browser-like client, with 1 and with 100 concurrent watchers, and
   the web process's CPU share while it serves them.

    .venv/bin/python bench/dashboard.py                        # SQLite in a temp data dir (~3 min)
    .venv/bin/python bench/dashboard.py --database-url postgresql://root@127.0.0.1:5432/test
    .venv/bin/python bench/dashboard.py --points 20000 --seconds 10 --watchers 1,20

On Postgres the bench creates a fresh database next to the one named in the URL and drops it.
Nothing is asserted: the numbers are printed side by side.
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from common import Web, fmt_bytes, fmt_ms, fresh_postgres, pct

INSERT_BATCH = 20_000
STREAM_KEY = "train_loss"


def make_job(*, status: str, step: int = 0, attempt: int = 0) -> str:
    """A job row inserted directly (no base model or dataset needed for the pages measured)."""
    from app.core.db import session_scope
    from app.core.ids import new_id
    from app.core.tables import Job, JobStatus
    from app.core.timeutil import utcnow

    job_id = new_id("ftjob")
    with session_scope() as session:
        session.add(
            Job(
                id=job_id,
                model="smollm2-135m-instruct",
                training_file="file-bench",
                hyperparameters={"r": 8, "lora_alpha": 8, "learning_rate": 2e-4},
                status=JobStatus(status),
                started_at=utcnow(),
                attempt=attempt,
                step=step,
                total_steps=step or None,
                epoch=1.0 if step else None,
                train_loss=0.9 if step else None,
            )
        )
    return job_id


def fill_metrics(job_id: str, points: int) -> int:
    """``points`` per series of five metrics (step-major, as the worker writes them), valid_loss every 100
    steps; returns the rows inserted."""
    from sqlmodel import insert

    from app.core.db import session_scope
    from app.core.tables import Metric
    from app.core.timeutil import utcnow

    rng = random.Random(points)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    total = 0

    def flush() -> None:
        nonlocal rows, total
        with session_scope() as session:
            session.exec(insert(Metric), params=rows)
        total += len(rows)
        rows = []

    for step in range(1, points + 1):
        epoch = 3 * step / points
        loss = 2.5 * math.exp(-3 * step / points) + 0.4 + rng.gauss(0, 0.05)
        values = {
            "train_loss": loss,
            "learning_rate": 2e-4 * min(1.0, step / (0.05 * points)) * (1 - step / (points + 1)),
            "grad_norm": abs(rng.gauss(1.0, 0.3)) + (5.0 if rng.random() < 0.001 else 0.0),
            "tokens_per_second": rng.gauss(1500, 40),
            "memory_gib": 6.2 + rng.random() * 0.1,
        }
        if step % 100 == 0:
            values["valid_loss"] = loss + 0.05
        for key, value in values.items():
            row = {"job_id": job_id, "key": key, "step": step, "epoch": epoch, "value": value}
            rows.append(row | {"created_at": now})
        if len(rows) >= INSERT_BATCH:
            flush()
    if rows:
        flush()
    return total


# ---------------------------------------------------------------------------------------------
# 1. the job page with many points


def time_get(client: httpx.Client, path: str, requests: int) -> tuple[list[float], httpx.Response]:
    start = time.perf_counter()
    response = client.get(path)  # the first (cold) request, and the response we describe
    response.raise_for_status()
    if "/series" in path:
        cold_ms = (time.perf_counter() - start) * 1000
        print(f"{'':>13}  {'  first (cold) request, not cached yet':<44} {cold_ms:8.1f}")
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        client.get(path).raise_for_status()
        times.append(time.perf_counter() - start)
    return times, response


def bench_pages(web: Web, jobs: dict[int, str], requests: int, heavy_requests: int) -> None:
    print(f"{'points/series':>13}  {'request':<44} {'p50 ms':>8} {'p95 ms':>8}  {'size':>12}  returned")
    with httpx.Client(base_url=web.url, headers=web.auth, timeout=300) as client:
        for points, job_id in jobs.items():
            base = f"/api/v1/fine_tuning/jobs/{job_id}"
            checks = [
                ("GET /jobs/{id} (HTML page)", f"/jobs/{job_id}", requests),
                ("GET .../series?max_points=2000", f"{base}/series?max_points=2000", requests),
                ("GET .../metrics?limit=100000 (raw)", f"{base}/metrics?limit=100000", heavy_requests),
            ]
            for label, path, n in checks:
                times, response = time_get(client, path, n)
                if "/series" in path:
                    body = response.json()["series"]
                    per = {k: len(s["steps"]) for k, s in body.items()}
                    stored = sum(s["total"] for s in body.values())
                    returned = f"{sum(per.values()):,} of {stored:,} points; per series: " + ", ".join(
                        f"{k} {n:,}" for k, n in sorted(per.items())
                    )
                elif "/metrics" in path:
                    returned = f"{len(response.json()['data']):,} points (one page)"
                else:
                    returned = "HTML"
                print(
                    f"{points:>13,}  {label:<44} {fmt_ms(pct(times, 50))} {fmt_ms(pct(times, 95))}  "
                    f"{fmt_bytes(len(response.content)):>12}  {returned}  [n={n}]",
                    flush=True,
                )


# ---------------------------------------------------------------------------------------------
# 2. from JobReporter.metrics() to a browser-like SSE client


def run_writer(job_id: str, seconds: float, interval: float, out: Path) -> None:
    """In its own process: the real JobReporter writes one point every ``interval`` seconds,
    then the final status; the wall-clock time of each metrics() call goes to ``out``."""
    from app.core.tables import JobStatus
    from worker.training.reporting import JobReporter

    steps = int(seconds / interval)
    written: dict[int, float] = {}
    start = time.time()
    with JobReporter(job_id, fence=1) as reporter:
        for step in range(1, steps + 1):
            time.sleep(max(0.0, start + step * interval - time.time()))
            written[step] = time.time()
            reporter.metrics(step, step / steps, {STREAM_KEY: 2.0 / math.sqrt(step)})
            reporter.step(step, steps, step / steps)
        reporter.set_status(JobStatus.succeeded)
    out.write_text(json.dumps(written))


class Watcher(threading.Thread):
    """One browser tab: follows the stream from the start, records when each point arrives."""

    def __init__(self, url: str, connected: threading.Semaphore, auth: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.auth = auth
        self.connected = connected
        self.received: list[tuple[int, int, float]] = []  # (metric id, step, receive time)
        self.error: str | None = None
        self.ended = False

    def run(self) -> None:
        from tests.e2e.support import sse_messages

        first = True
        try:
            # while the job runs a status message comes every poll; a quiet stream sends a
            # keepalive every 15 s: 20 s without a byte means the stream is stuck
            for message in sse_messages(self.url, read_timeout=20, auth=self.auth):
                now = time.time()
                if first:
                    self.connected.release()
                    first = False
                if message.event == "metrics":
                    self.received += [(p["id"], p["s"], now) for p in message.data if p["k"] == STREAM_KEY]
                elif message.event == "end":
                    self.ended = True
                    return
        except httpx.HTTPStatusError as exc:
            self.error = f"HTTP {exc.response.status_code}"
        except httpx.RemoteProtocolError:
            self.error = "the server broke the stream off"
        except httpx.TimeoutException:
            self.error = "no byte for 20 s (read timeout)"
        except Exception as exc:
            self.error = type(exc).__name__
        if first:
            self.connected.release()


ERROR_LINE = re.compile(r"^[\w.]+(Error|Exception)\b.*")


def bench_stream(web: Web, env: dict[str, str], tmp: Path, watchers: int, seconds: float) -> dict[str, Any]:
    from sqlmodel import col, select

    from app.core.db import read_session
    from app.core.tables import Metric

    job_id = make_job(status="running", attempt=1)
    url = f"{web.url}/api/v1/fine_tuning/jobs/{job_id}/stream"
    log_offset = web.log_path.stat().st_size
    connected = threading.Semaphore(0)
    threads = [Watcher(url, connected, web.auth) for _ in range(watchers)]
    for thread in threads:
        thread.start()
    # every watcher has its first status message (or gave up) before the first point, or 10 s passed
    deadline = time.monotonic() + 10
    in_time = sum(connected.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in threads)
    out = tmp / f"written-{job_id}.json"
    cpu_before, wall_before = web.cpu_seconds(), time.monotonic()
    writer = subprocess.run(
        [sys.executable, __file__, "--writer", job_id, "--seconds", str(seconds), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if writer.returncode != 0:
        sys.exit(f"the writer failed:\n{writer.stderr[-3000:]}")
    deadline = time.monotonic() + 25
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    cpu = (web.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
    written = {int(step): t for step, t in json.loads(out.read_text()).items()}
    with read_session() as session:
        query = select(Metric.id, Metric.created_at).where(Metric.job_id == job_id, Metric.key == STREAM_KEY)
        rows = session.exec(query.order_by(col(Metric.id))).all()
        committed = {int(i or 0): created.timestamp() for i, created in rows}
    delays, flush_part, stream_part, complete = [], [], [], 0
    problems: Counter[str] = Counter()
    for thread in threads:
        ids = [i for i, _, _ in thread.received]
        steps = sorted(s for _, s, _ in thread.received)
        if steps == sorted(written) and len(set(ids)) == len(ids):
            complete += 1
        else:
            got = f"{len(ids)} points ({len(set(steps))} distinct)"
            problems[f"{got}, {thread.error or ('ended' if thread.ended else 'still open')}"] += 1
        for metric_id, step, received in thread.received:
            delays.append(received - written[step])
            flush_part.append(committed[metric_id] - written[step])
            stream_part.append(received - committed[metric_id])
    with open(web.log_path, errors="replace") as log:
        log.seek(log_offset)
        errors = Counter(m.group(0)[:110] for m in map(ERROR_LINE.match, log) if m)
    return {
        "watchers": watchers,
        "in_time": in_time,
        "points": len(written),
        "complete": complete,
        "problems": problems,
        "errors": errors,
        "delays": delays,
        "flush": flush_part,
        "stream": stream_part,
        "cpu": cpu,
    }


def print_stream(results: list[dict[str, Any]], seconds: float, poll: float) -> None:
    print(
        f"delay from JobReporter.metrics() to the SSE client, 10 points/s for {seconds:g} s "
        f"(reporter flushes every 0.2 s, stream polls every {poll:g} s)"
    )
    print(
        f"{'watchers':>8}  {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}   "
        f"{'write->commit p50/p95 ms':>25}   {'commit->client p50/p95 ms':>26}   {'web CPU':>8}  received"
    )
    notes = []
    for r in results:
        d, f, s = r["delays"], r["flush"], r["stream"]
        if r["complete"] == r["watchers"]:
            received = f"all {r['points']} points, no duplicate, in each of {r['watchers']} watcher(s)"
        else:
            received = (
                f"only {r['complete']}/{r['watchers']} watchers got all {r['points']} points exactly once"
            )
            notes.append(
                f"{r['watchers']} watchers: {r['in_time']} had their first message within 10 s; the others: "
                + "; ".join(f"{n} × {what}" for what, n in r["problems"].most_common())
            )
        if r["errors"]:
            notes.append(
                f"{r['watchers']} watchers, web log: "
                + "; ".join(f"{n} × {line}" for line, n in r["errors"].most_common(3))
            )
        if not d:
            print(f"{r['watchers']:>8}  {'-':>8} {'-':>8} {'-':>8}   no point received")
            continue
        print(
            f"{r['watchers']:>8}  {fmt_ms(pct(d, 50))} {fmt_ms(pct(d, 95))} {fmt_ms(max(d))}   "
            f"{pct(f, 50) * 1000:>12.0f} / {pct(f, 95) * 1000:<10.0f}   "
            f"{pct(s, 50) * 1000:>13.0f} / {pct(s, 95) * 1000:<10.0f}   "
            f"{100 * r['cpu']:>7.0f}%  {received}",
            flush=True,
        )
    for note in notes:
        print("  " + note)


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=100_000, help="points per series of the large job")
    parser.add_argument("--small-points", type=int, default=1_000, help="points per series of the small job")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page (after a warm-up)")
    parser.add_argument(
        "--heavy-requests", type=int, default=5, help="timed requests of the raw /metrics (seconds each)"
    )
    parser.add_argument("--seconds", type=float, default=20, help="how long the writer writes, per run")
    parser.add_argument("--watchers", default="1,100", help="concurrent SSE clients, one run each")
    parser.add_argument("--database-url", default=None, help="a Postgres server URL (default: SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data, web.log) afterwards")
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        run_writer(args.writer, args.seconds, 0.1, Path(args.out))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        if args.database_url:
            with fresh_postgres(args.database_url) as url:
                run(args, tmp, url)
        else:
            run(args, tmp, None)
    finally:
        if args.keep:
            print(f"\nkept {tmp} (web.log: the web process's log)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path, database_url: str | None) -> None:
    from app.core.config import get_settings
    from app.core.db import get_engine, migrate
    from tests.accounts import bearer, make_user

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["TUNEDECK_DATA_DIR"] = str(tmp / "data")
    (tmp / "data").mkdir()
    if database_url:
        env["DATABASE_URL"] = database_url
    os.environ.clear()
    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    migrate()
    print(
        f"database: {get_engine().dialect.name} ({get_engine().url.render_as_string(hide_password=True)}), "
        f"{os.cpu_count()} CPUs; web: one `tunedeck web` (uvicorn) process"
    )

    jobs = {}
    for points in (args.small_points, args.points):
        start = time.perf_counter()
        job_id = make_job(status="succeeded", step=points)
        rows = fill_metrics(job_id, points)
        jobs[points] = job_id
        print(
            f"job with {points:,} points per series: {rows:,} metric rows inserted "
            f"in {time.perf_counter() - start:.1f} s"
        )
    print()

    web = Web(env, tmp / "web.log")
    web.auth = bearer(make_user("bench"))  # every route but /healthz needs a key
    try:
        bench_pages(web, jobs, args.requests, args.heavy_requests)
        print()
        results = [
            bench_stream(web, env, tmp, int(n), args.seconds) for n in args.watchers.split(",") if n.strip()
        ]
        print_stream(results, args.seconds, settings.sse_poll_seconds)
    finally:
        web.stop()


if __name__ == "__main__":
    main()
