"""A busy SQLite database and a full disk, with a real worker process."""

import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from app.core.config import get_settings
from tests.e2e.support import wait_for
from tests.factories import INSTRUCTION_ROWS, create_job, events, upload
from tests.reliability.conftest import Workers, finished, job_state

pytestmark = pytest.mark.slow


def test_training_goes_on_while_sqlite_is_locked_and_every_point_arrives_once(
    client: TestClient, tiny_model: str, workers: Workers, configured: Path, database_url: str
) -> None:
    # a lease longer than the lock: a lock outliving the lease would (rightly) re-queue the job
    worker = workers.start(TUNEDECK_FAULT_INJECTION="step_delay=0.05", TUNEDECK_LEASE_SECONDS="30")
    hp = {"n_epochs": 5, "save_steps": 1000}  # 45 steps; no checkpoint (a save waits for the database)
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS), hp=hp)
    wait_for(lambda: job_state(client, job_id)["progress"]["step"] >= 5, timeout=180, message="step 5")

    lock = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")  # hold the write lock, as a long transaction elsewhere would
    held_from = job_state(client, job_id)["progress"]["step"]  # readers still work (WAL)
    time.sleep(8)
    frozen_at = job_state(client, job_id)["progress"]["step"]
    lock.execute("ROLLBACK")
    lock.close()
    assert frozen_at == held_from  # nothing could be written while the lock was held ...

    # ... but training went on: the steps trained meanwhile arrive in one go once the lock is gone.
    # A trainer that had been blocked would hold at most the step in flight when the lock came
    # (held_from + 1) and then count up one step at a time; a loaded box trains a step in ~1.5 s,
    # so 8 s of lock give a jump of 3 or more however slow the box is.
    moved_to = wait_for(
        lambda: (step := job_state(client, job_id)["progress"]["step"]) > held_from and step,
        timeout=30,
        interval=0.05,
        message="the steps trained while the database was locked",
    )
    assert moved_to >= held_from + 3, (held_from, moved_to)
    job = finished(client, job_id, 240, workers)
    assert job["status"] == "succeeded" and job["attempt"] == 1, job
    points = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
    assert sorted(p["step"] for p in points if p["key"] == "train_loss") == list(range(1, 46))
    log = (configured.parent / f"{worker.args[-1]}.log").read_text()
    assert "metric write delayed" in log and "after the database was busy for" in log


@pytest.fixture
def small_disk(tmp_path: Path, workers: Workers) -> Iterator[Path]:
    """A 32 MiB tmpfs as the artifact folder (needs root, as in CI)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    os.environ["TUNEDECK_ARTIFACTS_DIR"] = str(mount)
    workers.env["TUNEDECK_ARTIFACTS_DIR"] = str(mount)
    get_settings.cache_clear()
    yield mount
    workers.stop()
    os.environ.pop("TUNEDECK_ARTIFACTS_DIR", None)
    get_settings.cache_clear()
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> None:
    """Write a ballast file until the file system is full."""
    chunk = b"\0" * 65536
    with open(mount / "ballast", "wb") as ballast:
        try:
            while True:
                ballast.write(chunk)
                ballast.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_fails_clearly(
    small_disk: Path, client: TestClient, tiny_model: str, workers: Workers
) -> None:
    workers.start(TUNEDECK_FAULT_INJECTION="step_delay=0.3")
    hp = {"n_epochs": 4, "save_steps": 3}
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS), hp=hp)
    assert (small_disk / "files").is_dir()  # the upload went to the small disk
    url = f"/api/v1/fine_tuning/jobs/{job_id}"
    wait_for(lambda: client.get(url + "/checkpoints").json()["data"], timeout=180, message="a checkpoint")
    fill(small_disk)

    job = finished(client, job_id, 180, workers)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "disk_full"
    message = job["error"]["message"]
    assert message.startswith("No space left on device while writing to"), message
    newest = client.get(url + "/checkpoints").json()["data"][0]
    assert f"the previous checkpoint (step {newest['step_number']}) is intact" in message
    assert job["attempt"] == 1  # a full disk is not retried: it would fail the same way

    # The previous checkpoint is complete: its weights load and the Trainer could resume from it.
    folder = small_disk / "jobs" / job_id / "checkpoints" / f"step-{newest['step_number']}"
    assert load_file(folder / "adapter_model.safetensors")
    assert (folder / "trainer_state.json").read_text().strip().endswith("}")
    assert not (small_disk / "jobs" / job_id / "staging").exists()  # partial files removed
    assert not (small_disk / "jobs" / job_id / "adapter").exists()
    assert message in events(client, job_id)
