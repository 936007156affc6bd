"""Short work never waits behind training: with a job training on `tunedeck run`'s worker, a
merge (short-lane work, like eval runs, batch compares and webhook sends) starts at once on the
short-lane worker, the evals the job names grade its checkpoints as they are saved, and the
training goes on."""

import time
from pathlib import Path

import pytest

from tests.e2e.support import Instance, wait_for
from tests.evals.test_job_evals import ON_VALIDATION_ROWS
from tests.factories import INSTRUCTION_ROWS, create_job, upload

pytestmark = pytest.mark.slow


def test_a_merge_starts_within_ten_seconds_and_checkpoints_are_graded_while_a_job_trains(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    instance = Instance(tmp_path / "data", {"TUNEDECK_FAULT_INJECTION": "step_delay=0.3"})
    instance.cli(
        "models", "register", "--data-dir", str(instance.data_dir), "tiny-llama", str(tiny_model_dir)
    )
    instance.start()
    try:
        with instance.client() as client:
            file_id = upload(client, INSTRUCTION_ROWS[:20])
            finished = create_job(client, "tiny-llama", file_id)
            url = f"/api/v1/fine_tuning/jobs/{finished}"
            wait_for(
                lambda: client.get(url).json()["status"] == "succeeded", timeout=180, message="the first job"
            )
            eval_id = client.post("/api/v1/evals", json=ON_VALIDATION_ROWS).json()["id"]
            busy = create_job(  # 200 steps, 0.3 s each, a checkpoint every 20 graded by the eval
                client, "tiny-llama", file_id, hp={"n_epochs": 40, "save_steps": 20}, evals=[eval_id]
            )
            busy_url = f"/api/v1/fine_tuning/jobs/{busy}"
            wait_for(
                lambda: client.get(busy_url).json()["progress"]["step"] >= 2, timeout=120, message="training"
            )

            asked = time.monotonic()
            assert client.post(url + "/merge").json()["status"] == "queued"
            wait_for(
                lambda: client.get(url + "/merge").json()["status"] in ("running", "succeeded"),
                timeout=60,
                interval=0.2,
                message="the merge to start",
            )
            took = time.monotonic() - asked
            assert took < 10, f"the merge waited {took:.1f} s"
            state = client.get(busy_url).json()
            assert state["status"] == "running" and state["progress"]["step"] < 200  # training went on
            merged = wait_for(
                lambda: (m := client.get(url + "/merge").json())["status"] in ("succeeded", "failed") and m,
                timeout=120,
                message="the merge",
            )
            assert merged["status"] == "succeeded", merged
            assert client.get(busy_url).json()["status"] == "running"

            first = f"tiny-llama:{busy}:ckpt-20"
            runs_url = f"/api/v1/evals/{eval_id}/runs"
            graded = wait_for(
                lambda: next(
                    (
                        r
                        for r in client.get(runs_url).json()["data"]
                        if r["model"] == first and r["status"] != "queued" and r["status"] != "in_progress"
                    ),
                    None,
                ),
                timeout=120,
                message="the eval run on the first checkpoint",
            )
            assert graded["status"] == "completed", graded
            assert (
                graded["result_counts"]["total"]
                == graded["result_counts"]["passed"] + graded["result_counts"]["failed"]
            )
            state = client.get(busy_url).json()
            assert state["status"] == "running" and state["progress"]["step"] < 200  # graded during training
            page = client.get(f"/jobs/{busy}", headers={"accept": "text/html"}).text
            assert 'id="checkpoint-matrix"' in page and f'data-model="{first}"' in page
            client.post(busy_url + "/cancel")
    finally:
        instance.stop()
