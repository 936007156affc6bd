"""An upload over TUNEDECK_MAX_UPLOAD_BYTES is refused (413) while it streams in: against a real
`tunedeck web` process, a 40 MiB chunked upload leaves its memory flat and no file anywhere."""

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.accounts import PASSWORD
from tests.e2e.support import TUNEDECK, free_port, wait_for

pytestmark = pytest.mark.slow

LIMIT = 2 << 20
MiB = 1 << 20
BOUNDARY = "tunedeck-limit-test"
ROW = (json.dumps({"instruction": "Say it again.", "output": "x" * 200}) + "\n").encode()


@dataclass
class Web:
    url: str
    key: str
    pid: int
    data_dir: Path
    tmp_dir: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def status(self, field: str) -> int:
        """A /proc/<pid>/status memory figure (VmRSS, VmHWM) in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    root = tmp_path_factory.mktemp("upload-limit")
    data_dir, tmp_dir = root / "data", root / "tmp"
    tmp_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "TUNEDECK_DATA_DIR": str(data_dir),
        "TUNEDECK_MAX_UPLOAD_BYTES": str(LIMIT),
        "TMPDIR": str(tmp_dir),
    }
    data = ["--data-dir", str(data_dir)]

    def cli(*args: str) -> str:
        return subprocess.run([TUNEDECK, *args], env=env, capture_output=True, text=True, check=True).stdout

    cli("create-admin", *data, "--username", "admin", "--password", PASSWORD)
    key = cli("api-key", "create", *data, "--user", "admin", "--name", "t").strip().splitlines()[-1]
    port = free_port()
    with open(root / "web.log", "wb") as log:
        proc = subprocess.Popen(
            [TUNEDECK, "web", *data, "--port", str(port)], env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (root / "web.log").read_text()
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=60, message="tunedeck web")
        yield Web(url, key, proc.pid, data_dir, tmp_dir)  # `tunedeck web` execs uvicorn: same pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def multipart(total: int) -> Iterator[bytes]:
    """A multipart body with a JSONL file of about ``total`` bytes, made as it is sent."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    rows, per_chunk = total // len(ROW), MiB // len(ROW)
    while rows > 0:
        yield ROW * min(rows, per_chunk)
        rows -= per_chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def post(web: Web, body: object, **headers: str) -> httpx.Response:
    headers = {**web.auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **headers}
    return httpx.post(web.url + "/api/v1/files", content=body, headers=headers, timeout=120)  # type: ignore[arg-type]


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_an_upload_over_the_limit_is_refused_while_it_streams_with_memory_flat(web: Web) -> None:
    # Warm up: a small upload goes through; a declared Content-Length over the limit is
    # refused before a byte of the body is read.
    small = b"".join(multipart(64 * 1024))
    assert post(web, small).status_code == 200
    declared = post(web, (b"x" * MiB for _ in range(40)), **{"Content-Length": str(40 * MiB)})
    assert declared.status_code == 413 and "2 MiB upload limit" in declared.json()["error"]["message"]

    before_files = set(files_in(web.data_dir))
    baseline = web.status("VmRSS")
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], web.status("VmRSS"))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    Path(f"/proc/{web.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS, so VmHWM is this upload's peak
    sampler.start()
    try:
        started = time.monotonic()
        refused = post(web, multipart(40 * MiB))  # a generator: sent chunked, no Content-Length
        took = time.monotonic() - started
    finally:
        done.set()
        sampler.join()
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert "2 MiB upload limit" in error["message"] and "TUNEDECK_MAX_UPLOAD_BYTES" in error["message"]
    assert refused.headers["x-content-type-options"] == "nosniff"
    grown = max(peak[0], web.status("VmHWM")) - baseline
    assert grown < 20 * MiB, f"the web process grew by {grown / MiB:.1f} MiB for a refused upload"
    assert set(files_in(web.data_dir)) == before_files, "the refused upload left files in the data dir"
    assert files_in(web.tmp_dir) == [], "the refused upload left files in the temp dir"
    assert took < 60
    listed = httpx.get(web.url + "/api/v1/files", headers=web.auth).json()
    assert [f["filename"] for f in listed["data"]] == ["big.jsonl"]  # only the small warm-up upload
