"""Two `tunedeck web` processes on one database behave like one: background work goes through
the queue to a worker, never a thread of the web process that happened to take the request.

With no worker running, a webhook ping and a playground batch made through either process stay
queued (nothing in a web process sends or answers them); a short-lane worker then delivers the
ping once and answers the batch once, and both processes show the same result.
"""

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.accounts import PASSWORD
from tests.e2e.support import TUNEDECK, free_port, server_process, stop, wait_for
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.slow


def test_two_web_processes_share_their_background_work_through_the_short_lane(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    serve_port = free_port()
    env |= {
        "TUNEDECK_DATA_DIR": str(data),
        "TUNEDECK_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "TUNEDECK_MODEL_SERVER_URL": f"http://127.0.0.1:{serve_port}",
    }
    dirs = ["--data-dir", str(data)]

    def cli(*args: str) -> str:
        return subprocess.run([TUNEDECK, *args], env=env, capture_output=True, text=True, check=True).stdout

    for name in ("tiny-a", "tiny-b"):  # two base models: a batch compares two models
        cli("models", "register", *dirs, name, str(tiny_model_dir))
    cli("create-admin", *dirs, "--username", "admin", "--password", PASSWORD)
    key = cli("api-key", "create", *dirs, "--user", "admin", "--name", "t").strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {key}"}
    receiver = Receiver().start()
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    serve_url = f"http://127.0.0.1:{serve_port}"
    with (
        server_process(
            [TUNEDECK, "web", *dirs, "--port", str(ports[0])], env, tmp_path / "a.log", urls[0], "web A"
        ),
        server_process(
            [TUNEDECK, "web", *dirs, "--port", str(ports[1])], env, tmp_path / "b.log", urls[1], "web B"
        ),
        server_process(
            [TUNEDECK, "serve", *dirs, "--port", str(serve_port)], env, tmp_path / "s.log", serve_url, "serve"
        ),
        httpx.Client(base_url=urls[0], headers=auth, timeout=60) as a,
        httpx.Client(base_url=urls[1], headers=auth, timeout=60) as b,
    ):
        hook = a.post("/api/v1/webhooks", json={"url": receiver.url}).json()
        ping = b.post(f"/api/v1/webhooks/{hook['id']}/test").json()
        body = {"models": ["tiny-a", "tiny-b"], "prompts": ["What is 3 plus 4?", "Hi"], "max_tokens": 4}
        batch = a.post("/api/v1/playground/batches", json=body).json()
        time.sleep(3)  # nothing in either web process sends or answers them
        assert receiver.received == []
        for web in (a, b):
            assert web.get(f"/api/v1/playground/batches/{batch['id']}").json()["status"] == "queued"
            assert (
                web.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"][0]["status"] == "pending"
            )

        with open(tmp_path / "short.log", "wb") as log:
            worker = subprocess.Popen(
                [TUNEDECK, "worker", *dirs, "--lanes", "short", "--name", "short@test"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            done = wait_for(
                lambda: (
                    (x := b.get(f"/api/v1/playground/batches/{batch['id']}").json())["status"]
                    in ("succeeded", "failed")
                    and x
                ),
                timeout=120,
                interval=0.5,
                message="the batch",
            )
            wait_for(lambda: receiver.received, timeout=60, message="the ping")
        finally:
            stop(worker)
        assert done["status"] == "succeeded", (done["error"], (tmp_path / "short.log").read_text()[-2000:])
        assert done["progress"] == done["total"] == 4
        assert all(cell["output"] is not None for row in done["rows"] for cell in row["outputs"].values())
        assert a.get(f"/api/v1/playground/batches/{batch['id']}").json()["rows"] == done["rows"]
        [post] = receiver.received  # once
        assert post.delivery_id == ping["id"] and post.signed_with(hook["secret"])
        for web in (a, b):
            [entry] = web.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
            assert (entry["status"], entry["attempts"]) == ("succeeded", 1)
    receiver.stop()
