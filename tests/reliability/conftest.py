"""Real `tunedeck worker` processes for the fault tests, sharing the test's database and broker."""

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.e2e.support import TUNEDECK, free_port, wait_for
from tests.factories import events


class Workers:
    """`tunedeck worker` processes sharing the test's database and embedded broker."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir, self.env = data_dir, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, **extra_env: str) -> subprocess.Popen[bytes]:
        name = f"w{len(self.procs)}-{uuid.uuid4().hex[:4]}@test"
        log = open(self.data_dir.parent / f"{name}.log", "wb")  # noqa: SIM115  (closed with the process)
        proc = subprocess.Popen(
            [TUNEDECK, "worker", "--data-dir", str(self.data_dir), "--name", name],
            env={**self.env, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def logs(self, tail: int | None = 3000) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-(tail or 0) :] for p in self.data_dir.parent.glob("w*@test.log")
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(configured: Path, database_url: str) -> Iterator[Workers]:
    if not database_url.startswith("sqlite"):
        pytest.skip("fault tests run on SQLite + the embedded broker here")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update({"TUNEDECK_LEASE_SECONDS": "3", "TUNEDECK_RETRY_BACKOFF_SECONDS": "1"})
    os.environ.update({"TUNEDECK_LEASE_SECONDS": "3", "TUNEDECK_RETRY_BACKOFF_SECONDS": "1"})
    from app.core.config import get_settings

    get_settings.cache_clear()
    pool = Workers(configured, env)
    yield pool
    pool.stop()
    for key in ("TUNEDECK_LEASE_SECONDS", "TUNEDECK_RETRY_BACKOFF_SECONDS"):
        os.environ.pop(key, None)
    get_settings.cache_clear()


def job_state(client: TestClient, job_id: str) -> dict:  # type: ignore[type-arg]
    return client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()  # type: ignore[no-any-return]


def finished(client: TestClient, job_id: str, timeout: float, workers: Workers) -> dict:  # type: ignore[type-arg]
    try:
        return wait_for(
            lambda: (j := job_state(client, job_id))["status"] in ("succeeded", "failed", "cancelled") and j,
            timeout=timeout,
            interval=0.5,
            message="the job to finish",
        )
    except TimeoutError:
        raise AssertionError(
            f"job did not finish: {job_state(client, job_id)}\n{events(client, job_id)}\n{workers.logs()}"
        ) from None


class RedisServer:
    """A redis-server of the test's own on a free port, that the test can stop and start again.

    Like the machine's Redis it keeps nothing on disk: a restart loses every queued message.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.folder)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, timeout=10, interval=0.1, message="redis-server to start")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_broker(tmp_path: Path, workers: Workers) -> Iterator[RedisServer]:
    """The test's own Redis as the broker, for the test process and the workers it starts."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    os.environ["REDIS_URL"] = workers.env["REDIS_URL"] = server.url
    from app.core.config import get_settings

    get_settings.cache_clear()
    yield server
    workers.stop()
    server.stop()
    os.environ.pop("REDIS_URL", None)
    get_settings.cache_clear()
