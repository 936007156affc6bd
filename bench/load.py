"""tunedeck under load on Postgres, against one real `tunedeck web` process:

1. reads: p50/p95/max of the jobs list (API and page, first and a later page, with a status
   filter), the job page (a short job and a big one), the big job's metrics and chart series,
   and the overview, on a database of 10k jobs and 1M metric points (seeded with COPY);
2. live: 100 SSE watchers on one running job while the worker's JobReporter, in its own process,
   logs 3 metrics a step at 10 steps/s for 60 s: delivery delay p50/p95/max, whether every point
   reached every watcher exactly once, and the CPU share of the web process.

    .venv/bin/python bench/load.py                  # ~3-4 min on 2 busy cores
    .venv/bin/python bench/load.py --quick          # ~1 min: 1k jobs, 100k points, 20 watchers
    .venv/bin/python bench/load.py --database-url postgresql://user@host:5432/postgres --keep

The database is a fresh `tunedeck_load_<random>` next to the one in the URL (DATABASE_URL by
default), dropped at the end unless --keep. Nothing is asserted: the numbers are printed.
"""

import argparse
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from common import Web, fmt_bytes, fmt_ms, fresh_postgres, pct
from load_live import KEYS, LiveResult, run_live
from load_seed import Seeded, seed

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/postgres"
QUICK = {
    "jobs": 1_000,
    "metric_rows": 100_000,
    "big_points": 10_000,
    "requests": 10,
    "watchers": 20,
    "seconds": 10,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL, help="Postgres server URL")
    add("--jobs", type=int, default=10_000, help="jobs to seed")
    add("--metric-rows", type=int, default=1_000_000, help="metric points to seed, all jobs together")
    add("--big-jobs", type=int, default=2, help="jobs with --big-points points each (the rest share)")
    add("--big-points", type=int, default=100_000, help="metric points of each big job")
    add("--requests", type=int, default=50, help="timed requests per read (after 3 warm-up ones)")
    add("--watchers", type=int, default=100, help="concurrent SSE clients on the live job")
    add("--seconds", type=float, default=60, help="how long the live job logs")
    add("--rate", type=float, default=10, help="steps per second the live job logs (3 points each)")
    add(
        "--quick",
        action="store_true",
        help="a small run (options given explicitly win): "
        + ", ".join(f"{k} {v:,}" for k, v in QUICK.items()),
    )
    add("--keep", action="store_true", help="keep the database and the temp dir (web.log)")
    args = parser.parse_args()
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    return args


def main() -> None:
    args = parse_args()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min) at the start"
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        with fresh_postgres(args.database_url, prefix="tunedeck_load_", keep=args.keep) as url:
            run(args, tmp, url)
            if args.keep:
                print(f"\nkept the database {url}")
    finally:
        if args.keep:
            print(f"kept {tmp} (web.log: the web process's log)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")


def use_database(tmp: Path, url: str) -> dict[str, str]:
    """Point this process (and the environment given to children) at ``url``; migrate it."""
    from app.core.config import get_settings
    from app.core.db import migrate

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["TUNEDECK_DATA_DIR"] = str(tmp / "data")
    env["DATABASE_URL"] = url
    (tmp / "data").mkdir()
    os.environ.clear()
    os.environ.update(env)
    get_settings.cache_clear()
    migrate()
    return env


def run(args: argparse.Namespace, tmp: Path, url: str) -> None:
    env = use_database(tmp, url)
    print(f"database: {url.rsplit('/', 1)[-1]} (fresh, migrated with Alembic); seeding with COPY:")
    start = time.perf_counter()
    seeded = seed(
        url, jobs=args.jobs, metric_rows=args.metric_rows, big_jobs=args.big_jobs, big_points=args.big_points
    )
    print(f"  seeded in {time.perf_counter() - start:.1f} s; jobs by status: {seeded.statuses}")
    start = time.perf_counter()
    analyze(url)
    print(f"  VACUUM ANALYZE in {time.perf_counter() - start:.1f} s\n")
    web = Web(env, tmp / "web.log")
    try:
        bench_reads(web, seeded, args.requests)
        print()
        result = run_live(
            web, env, seeded.key, tmp, watchers=args.watchers, seconds=args.seconds, rate=args.rate
        )
        print_live(result, args.rate)
    finally:
        web.stop()


def analyze(url: str) -> None:
    """Statistics for the planner, and the visibility map index-only scans need (autovacuum
    would do the same on a live server some time after a bulk load)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")
        size = connection.execute("SELECT pg_total_relation_size('metrics')").fetchone()
    print(f"  metrics table with its indexes: {fmt_bytes(int(size[0] if size else 0)).strip()}")


def reads(seeded: Seeded) -> list[tuple[str, str]]:
    api = "/api/v1/fine_tuning/jobs"
    big = f"{api}/{seeded.big_job}"
    return [
        ("jobs API, first page (limit=20)", f"{api}?limit=20"),
        ("jobs API, status=failed", f"{api}?limit=20&status=failed"),
        ("jobs API, status=running", f"{api}?limit=20&status=running"),
        ("jobs API, a later page (after=)", f"{api}?limit=20&after={seeded.later_cursor}"),
        ("/jobs (HTML, page 1)", "/jobs"),
        ("/jobs?page=200 (HTML)", "/jobs?page=200"),
        ("/jobs/{id} (HTML), short job", f"/jobs/{seeded.short_job}"),
        ("/jobs/{id} (HTML), big job", f"/jobs/{seeded.big_job}"),
        ("big job: metrics?limit=10000", f"{big}/metrics?limit=10000"),
        ("big job: series?max_points=2000", f"{big}/series?max_points=2000"),
        ("/ (overview, HTML)", "/"),
    ]


def time_one(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed, response


def bench_reads(web: Web, seeded: Seeded, requests: int) -> None:
    """One first (cold) request of every read, then per read 3 warm-up and ``requests`` timed ones."""
    print(f"{'request':<36} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'first ms':>9}  {'size':>12}")
    headers = {"Authorization": f"Bearer {seeded.key}"}
    with httpx.Client(base_url=web.url, headers=headers, timeout=120) as client:
        first = {path: time_one(client, path) for _, path in reads(seeded)}
        for label, path in reads(seeded):
            cold, response = first[path]
            for _ in range(3):
                time_one(client, path)
            times = [time_one(client, path)[0] for _ in range(requests)]
            print(
                f"{label:<36} {fmt_ms(pct(times, 50))} {fmt_ms(pct(times, 95))} {fmt_ms(max(times))} "
                f"{fmt_ms(cold):>9}  {fmt_bytes(len(response.content)):>12}",
                flush=True,
            )
    print(f"(n={requests} per read; 'first': the very first request of each, in a pass before the others)")


def print_live(r: LiveResult, rate: float) -> None:
    cores = os.cpu_count() or 1
    print(
        f"live: {r.watchers} SSE watchers on one running job; the worker's JobReporter (own process) "
        f"logs {len(KEYS)} points a step at {rate:g} steps/s for {r.steps} steps "
        "(it flushes every 0.2 s, the stream polls every 0.5 s)"
    )
    print(
        f"{'watchers':>8} {'delivered / expected':>22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"
        f"   {'write->commit p50/p95':>21}   {'commit->client p50/p95':>22}"
    )
    if not r.delays:
        print(f"{r.watchers:>8}  nothing delivered ({r.connected} connected within 10 s)")
        return
    print(
        f"{r.watchers:>8} {f'{r.delivered:,} / {r.expected:,}':>22} {fmt_ms(pct(r.delays, 50))} "
        f"{fmt_ms(pct(r.delays, 95))} {fmt_ms(max(r.delays))}   "
        f"{pct(r.flush, 50) * 1000:>10.0f} / {pct(r.flush, 95) * 1000:<8.0f}   "
        f"{pct(r.stream, 50) * 1000:>11.0f} / {pct(r.stream, 95) * 1000:<8.0f}"
    )
    print(
        f"  {r.complete}/{r.watchers} watchers got every point exactly once "
        f"({r.missing:,} deliveries missing, {r.duplicates:,} duplicated; "
        f"{r.connected} had their first message within 10 s)"
    )
    for what, n in r.problems.most_common(5):
        print(f"    {n} × {what}")
    web, postgres, bench = r.cpu
    print(
        f"  CPU while it logged: web process {web:.0%} of one core = {web / cores:.0%} of the machine "
        f"({cores} cores); this database's Postgres backends {postgres:.0%} of a core; "
        f"the watchers (this process) {bench:.0%}"
    )


if __name__ == "__main__":
    main()
