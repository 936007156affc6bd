"""Stopping `tunedeck run` mid-job hands the job back; starting it again resumes the job from its
last checkpoint and finishes it. Killing the web process mid-job loses nothing: the worker goes on
and a watching client reconnects and gets every point once."""

import subprocess
from pathlib import Path

import pytest

from tests.e2e.support import TUNEDECK, Instance, healthy, wait_for, watch_like_a_browser
from tests.factories import upload

pytestmark = pytest.mark.slow


def test_stopping_tunedeck_run_mid_job_and_starting_again_resumes_it(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    env = {"TUNEDECK_LEASE_SECONDS": "3", "TUNEDECK_RETRY_BACKOFF_SECONDS": "1"}
    instance = Instance(tmp_path / "data", env)
    instance.cli(
        "models", "register", "--data-dir", str(instance.data_dir), "tiny-llama", str(tiny_model_dir)
    )
    instance.start()
    try:
        with instance.client() as client:
            file_id = upload(client)
            hp = {
                "n_epochs": 4,  # 36 steps: stopping cuts the job at once (Celery's cold shutdown)
                "save_steps": 5,
                "logging_steps": 1,
                "batch_size": 4,
                "gradient_accumulation_steps": 1,
                "max_seq_length": 128,
                "gradient_checkpointing": False,
            }
            job_id = client.post(
                "/api/v1/fine_tuning/jobs",
                json={"model": "tiny-llama", "training_file": file_id, "hyperparameters": hp},
            ).json()["id"]
            url = f"/api/v1/fine_tuning/jobs/{job_id}"
            wait_for(lambda: client.get(url).json()["progress"]["step"] >= 8, timeout=180, message="step 8")
    finally:
        instance.stop()
    # A new process on the same data dir (the port changes; the database and artifacts stay).
    again = Instance(tmp_path / "data", env)
    again.start()
    try:
        with again.client() as client:
            url = f"/api/v1/fine_tuning/jobs/{job_id}"
            assert client.get(url).json()["status"] in (
                "retrying",
                "validating_files",
                "running",
                "succeeded",
            )
            job = wait_for(
                lambda: (j := client.get(url).json())["status"] in ("succeeded", "failed") and j,
                timeout=240,
                message="the resumed job",
            )
            assert job["status"] == "succeeded", job["error"]
            messages = [
                e["message"] for e in client.get(url + "/events", params={"limit": 200}).json()["data"]
            ]
            assert job["attempt"] == 2, (job, messages[:12])
            messages = [
                e["message"] for e in client.get(url + "/events", params={"limit": 200}).json()["data"]
            ]
            assert any("tunedeck run shut down" in m for m in messages)
            assert any("resuming from the checkpoint at step" in m for m in messages)
            steps = sorted(
                p["step"] for p in client.get(url + "/metrics").json()["data"] if p["key"] == "train_loss"
            )
            assert steps == list(range(1, 37))  # 9 steps per epoch, each once
    finally:
        again.stop()


def test_restarting_the_web_process_mid_job_loses_no_point_and_the_stream_resumes(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """`tunedeck web` and `tunedeck worker` as separate processes; the web one is killed while a
    browser-like client watches the job, and started again on the same port."""
    data = tmp_path / "data"
    instance = Instance(data, {"TUNEDECK_FAULT_INJECTION": "step_delay=0.2"})
    instance.cli("models", "register", "--data-dir", str(data), "tiny-llama", str(tiny_model_dir))
    instance.ensure_admin()  # started by hand below, not through start()
    logs = open(tmp_path / "processes.log", "wb")  # noqa: SIM115
    web_command = [TUNEDECK, "web", "--data-dir", str(data), "--port", str(instance.port)]

    def start_web() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(web_command, env=instance.env, stdout=logs, stderr=subprocess.STDOUT)
        wait_for(lambda: healthy(instance.url), timeout=60, message="the web process")
        return proc

    worker = subprocess.Popen(
        [TUNEDECK, "worker", "--data-dir", str(data)], env=instance.env, stdout=logs, stderr=subprocess.STDOUT
    )
    web = start_web()
    restarted: list[subprocess.Popen[bytes]] = []
    try:
        with instance.client() as client:
            file_id = upload(client)
            hp = {"n_epochs": 4, "logging_steps": 1, "batch_size": 4, "gradient_accumulation_steps": 1}
            job_id = client.post(
                "/api/v1/fine_tuning/jobs",
                json={"model": "tiny-llama", "training_file": file_id, "hyperparameters": hp},
            ).json()["id"]

        def restart_after_a_few_points(points: list[dict[str, object]]) -> None:
            if len(points) >= 8 and not restarted:
                web.kill()  # a crash, not a clean shutdown
                web.wait()
                restarted.append(start_web())

        stream = f"{instance.url}/api/v1/fine_tuning/jobs/{job_id}/stream"
        points, status, reconnects = watch_like_a_browser(
            stream, instance.auth, on_point=restart_after_a_few_points
        )
        assert restarted and reconnects >= 1
        assert status == "succeeded"
        with instance.client() as client:
            everything = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
            job = client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()
        ids = [p["id"] for p in points]
        assert len(ids) == len(set(ids)), "a point arrived twice"
        assert sorted(ids) == [p["id"] for p in everything], "a point is missing"
        assert sorted(p["s"] for p in points if p["k"] == "train_loss") == list(range(1, 37))
        assert job["attempt"] == 1  # the worker never noticed
    finally:
        for proc in (web, *restarted, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        logs.close()
