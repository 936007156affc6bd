"""What the bench scripts share: percentiles and formatting, a fresh Postgres database, and a
real `tunedeck web` process on its own port."""

import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TUNEDECK = str(Path(sys.executable).parent / "tunedeck")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def fmt_bytes(n: int) -> str:
    return f"{n / 1024:8.0f} KiB" if n < 2**20 else f"{n / 2**20:8.1f} MiB"


@contextmanager
def fresh_postgres(url: str, prefix: str = "tunedeck_bench_", keep: bool = False) -> Iterator[str]:
    """A new, empty database on the server of ``url``, dropped afterwards unless ``keep``."""
    import sqlalchemy as sa

    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Web:
    """`tunedeck web` on its own port; the process id is uvicorn's (the CLI exec()s it)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        from tests.e2e.support import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth: dict[str, str] = {}  # the Authorization header clients send, once a key exists
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [TUNEDECK, "web", "--data-dir", env["TUNEDECK_DATA_DIR"], "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"tunedeck web exited:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"tunedeck web did not start:\n{self.log()}")

    def cpu_seconds(self) -> float:
        """utime + stime of the web process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
