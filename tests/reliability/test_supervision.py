"""A child of `tunedeck run` that dies is started again; the web app answers throughout.

SIGKILL the Celery worker mid-job: `/livez` keeps answering, a new worker comes up, the job is
handed back at once and resumes from its checkpoint, ending with each step once; the log and the
overview's workers panel say what happened. SIGKILL the model server: the next chat request
succeeds once it is back.
"""

import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.support import Instance, wait_for
from tests.factories import upload

pytestmark = pytest.mark.slow


def _child(instance: Instance, marker: str) -> psutil.Process:
    """The child of `tunedeck run` whose command line holds ``marker``."""
    assert instance.proc is not None
    found = [p for p in psutil.Process(instance.proc.pid).children() if marker in " ".join(p.cmdline())]
    assert len(found) == 1, [p.cmdline() for p in psutil.Process(instance.proc.pid).children()]
    return found[0]


def _training_worker(instance: Instance) -> psutil.Process:
    """The worker that trains (`tunedeck run` also starts one for the short lane alone)."""
    assert instance.proc is not None
    return _child(instance, f"--hostname tunedeck-{instance.proc.pid}@")


class LivenessProbe:
    """Asks the web app's /livez every 0.2 s from a thread and remembers every miss."""

    def __init__(self, url: str) -> None:
        self.url, self.answers, self.misses = url, 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "LivenessProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                ok = httpx.get(self.url + "/livez", timeout=2).status_code == 200
            except httpx.HTTPError as exc:
                ok, reason = False, repr(exc)
            else:
                reason = "not 200"
            if ok:
                self.answers += 1
            else:
                self.misses.append(reason)


def test_killed_worker_and_model_server_come_back_while_the_web_app_answers(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    instance = Instance(tmp_path / "data", {"TUNEDECK_RETRY_BACKOFF_SECONDS": "1"})
    instance.cli(
        "models", "register", "--data-dir", str(instance.data_dir), "tiny-llama", str(tiny_model_dir)
    )
    instance.start()
    try:
        with instance.client() as client, LivenessProbe(instance.url) as probe:
            hp = {
                "n_epochs": 3,  # 27 steps
                "save_steps": 5,
                "logging_steps": 1,
                "batch_size": 4,
                "gradient_accumulation_steps": 1,
                "max_seq_length": 128,
                "gradient_checkpointing": False,
            }
            body = {"model": "tiny-llama", "training_file": upload(client), "hyperparameters": hp}
            job_id = client.post("/api/v1/fine_tuning/jobs", json=body).json()["id"]
            url = f"/api/v1/fine_tuning/jobs/{job_id}"
            wait_for(lambda: client.get(url).json()["progress"]["step"] >= 8, timeout=180, message="step 8")
            worker = _training_worker(instance)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)

            job = wait_for(
                lambda: (j := client.get(url).json())["status"] in ("succeeded", "failed") and j,
                timeout=300,
                message="the job to finish after the worker was killed",
            )
            assert job["status"] == "succeeded", job["error"]
            assert job["attempt"] == 2
            assert _training_worker(instance).pid != worker.pid  # a new worker did it
            messages = [
                e["message"] for e in client.get(url + "/events", params={"limit": 300}).json()["data"]
            ]
            assert any("the worker killed by SIGKILL; tunedeck run starts it again" in m for m in messages)
            assert any("resuming from the checkpoint at step" in m for m in messages)
            steps = sorted(
                p["step"] for p in client.get(url + "/metrics").json()["data"] if p["key"] == "train_loss"
            )
            assert steps == list(range(1, 28))  # each step once
            overview = client.get("/", headers={"Accept": "text/html"}).text
            assert "restarted 1 time" in overview and "last exit: killed by SIGKILL" in overview

            chat = {"model": "tiny-llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
            assert client.post("/v1/chat/completions", json=chat, timeout=120).status_code == 200
            server = _child(instance, "worker.serving.app")
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            started = time.monotonic()
            answer = wait_for(
                lambda: (
                    (a := client.post("/v1/chat/completions", json=chat, timeout=120)).status_code == 200
                    and a
                ),
                timeout=180,
                interval=1,
                message="a chat answer from the restarted model server",
            )
            assert answer.json()["choices"][0]["message"]["role"] == "assistant"
            assert _child(instance, "worker.serving.app").pid != server.pid
            back_after = time.monotonic() - started
        assert probe.misses == [], probe.misses  # the web app answered every probe throughout
        assert probe.answers > 50
        log = instance.log()
        assert "killed by SIGKILL unexpectedly; starting it again in 1 s" in log
        assert "stopping tunedeck" not in log
        assert back_after < 180
    finally:
        instance.stop()
