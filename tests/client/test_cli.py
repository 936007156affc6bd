"""`tunedeck jobs …` and `tunedeck datasets …` as a person runs them: the real command in a
subprocess, talking to a real `tunedeck run` over its REST API with an API key."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.support import TUNEDECK, Instance, free_port, wait_for
from tests.e2e.test_spine import TINY_JOB
from tests.factories import INSTRUCTION_ROWS, upload

pytestmark = pytest.mark.slow


def tunedeck(
    instance: Instance, cwd: Path, *args: str, api_key: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI from an empty folder, configured only through TUNEDECK_URL / TUNEDECK_API_KEY."""
    env = client_env(instance, api_key)
    return subprocess.run(
        [TUNEDECK, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def client_env(instance: Instance, api_key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in instance.env.items() if not k.startswith("TUNEDECK_")}
    env["TUNEDECK_URL"] = instance.url
    key = instance.api_key if api_key is None else api_key
    if key:
        env["TUNEDECK_API_KEY"] = key
    return env


def write_rows(path: Path, rows: list[dict[str, str]] = INSTRUCTION_ROWS) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def hp_flags(spec: dict[str, object]) -> list[str]:
    return [flag for key, value in spec.items() for flag in ("--hp", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="module")
def file_id(embedded: Instance) -> str:
    with embedded.client() as client:
        return upload(client)


def test_datasets_upload_prints_counts_and_list_shows_it(embedded: Instance, tmp_path: Path) -> None:
    done = tunedeck(embedded, tmp_path, "datasets", "upload", str(write_rows(tmp_path / "sums.jsonl")))
    assert done.returncode == 0, done.stderr
    dataset_id, filename, *_ = done.stdout.split()
    assert dataset_id.startswith("file-") and filename == "sums.jsonl"
    assert "40 rows: 36 train, 4 validation" in done.stdout
    listed = tunedeck(embedded, tmp_path, "datasets", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("ID ")
    assert any(line.split()[0] == dataset_id for line in listed.stdout.splitlines())
    assert not (tmp_path / "data" / "tunedeck.db").exists(), "a client command opened a database"


def test_broken_dataset_lists_each_problem_with_its_line(embedded: Instance, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        json.dumps(INSTRUCTION_ROWS[0]) + "\n{not json\n" + json.dumps({"instruction": "no output"}) + "\n"
    )
    done = tunedeck(embedded, tmp_path, "datasets", "upload", str(broken))
    assert done.returncode == 2, done.stdout
    assert "problem(s) in the file" in done.stderr
    assert re.search(r"^  line 2: ", done.stderr, re.M) and re.search(r"^  line 3: ", done.stderr, re.M)


def test_create_with_watch_trains_to_100_percent_and_list_shows_it(
    embedded: Instance, tmp_path: Path
) -> None:
    quick = hp_flags({**TINY_JOB, "n_epochs": 1})  # 36 train rows in batches of 4: 9 steps
    args = ["jobs", "create", "--model", "tiny-llama", "--file", str(write_rows(tmp_path / "sums.jsonl"))]
    done = tunedeck(embedded, tmp_path, *args, "--suffix", "cli", *quick, "--watch", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr + embedded.log()
    job_id = done.stdout.splitlines()[0]
    assert job_id.startswith("ftjob-")
    assert "uploaded" in done.stderr and "40 rows" in done.stderr
    lines = done.stdout.splitlines()
    assert any(
        re.match(r"\[#{20}\] step 9/9 100%  train \d+\.\d{4}  valid \d+\.\d{4}", line) for line in lines
    )
    assert any(re.search(r"\[[#.]{20}\] step \d/9 \d+%  train \d+\.\d{4}.*ETA", line) for line in lines)
    assert any("Epoch 1 of 1 finished" in line for line in lines), "events are printed above the bar"
    assert lines[-1] == f"{job_id} succeeded: fine-tuned model tiny-llama:{job_id}"

    listed = tunedeck(embedded, tmp_path, "jobs", "list", "--status", "succeeded")
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(job_id))
    assert row[1:5] == ["succeeded", "tiny-llama", "9/9", "100%"] and row[7] == "admin"
    as_json = json.loads(tunedeck(embedded, tmp_path, "jobs", "get", job_id, "--json").stdout)
    assert as_json["status"] == "succeeded" and as_json["suffix"] == "cli"
    assert as_json["hyperparameters"]["learning_rate"] == TINY_JOB["learning_rate"]


def test_wrong_model_prints_the_apis_message(embedded: Instance, file_id: str, tmp_path: Path) -> None:
    with embedded.client() as client:
        body = {"model": "no-such-model", "training_file": file_id}
        message = client.post("/api/v1/fine_tuning/jobs", json=body).json()["error"]["message"]
    done = tunedeck(
        embedded, tmp_path, "jobs", "create", "--model", "no-such-model", "--training-file", file_id
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"error: {message}"


def test_missing_invalid_key_and_no_server_each_say_what_to_do(embedded: Instance, tmp_path: Path) -> None:
    missing = tunedeck(embedded, tmp_path, "jobs", "list", api_key="")
    assert missing.returncode == 2 and "tunedeck api-key create --user" in missing.stderr
    assert f"{embedded.url}/account" in missing.stderr

    wrong = "td-not-a-real-key-123"
    invalid = tunedeck(embedded, tmp_path, "jobs", "list", api_key=wrong)
    assert invalid.returncode == 2 and "API key is not valid" in invalid.stderr
    assert "tunedeck api-key create" in invalid.stderr and wrong not in invalid.stdout + invalid.stderr

    nowhere = f"http://127.0.0.1:{free_port()}"
    down = tunedeck(embedded, tmp_path, "datasets", "list", "--url", nowhere)
    assert down.returncode == 2 and f"tunedeck isn't reachable at {nowhere}" in down.stderr
    assert embedded.api_key not in down.stdout + down.stderr


def test_cancelling_a_watched_job_ends_the_watch_with_exit_1(
    embedded: Instance, file_id: str, tmp_path: Path
) -> None:
    long_job = hp_flags({**TINY_JOB, "n_epochs": 200})
    args = ["jobs", "create", "--model", "tiny-llama", "--training-file", file_id, *long_job]
    created = tunedeck(embedded, tmp_path, *args)
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.strip()
    watcher = subprocess.Popen(
        [TUNEDECK, "jobs", "watch", job_id],
        cwd=tmp_path,
        env=client_env(embedded),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with embedded.client() as client:
            wait_for(
                lambda: client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()["progress"]["step"] >= 2,
                timeout=120,
                message="the job to run a few steps",
            )
        time.sleep(0.5)  # let the watcher draw a running line
        cancelled = tunedeck(embedded, tmp_path, "jobs", "cancel", job_id)
        assert cancelled.returncode == 0 and job_id in cancelled.stdout, cancelled.stderr
        stdout, stderr = watcher.communicate(timeout=90)
    finally:
        watcher.kill()
    assert watcher.returncode == 1, stdout + stderr
    assert re.search(r"step \d+/1800", stdout)
    assert f"{job_id} was cancelled" in stderr
