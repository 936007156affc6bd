"""OpenAI's official Python client against a real instance, with base_url `<instance>/api/v1`:
files, fine-tuning jobs (create, list with cursor pages, retrieve, cancel, events, checkpoints)
and errors surfacing as the client's own exception classes carrying our messages."""

import json

import openai
import pytest

from tests.e2e.support import Instance
from tests.factories import INSTRUCTION_ROWS
from tests.security.conftest import FinishedJob

pytestmark = pytest.mark.slow


def connect(instance: Instance, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=key or instance.api_key, base_url=instance.url + "/api/v1", max_retries=0)


def test_the_official_client_uploads_and_runs_fine_tuning_jobs(
    instance: Instance, finished_job: FinishedJob
) -> None:
    client = connect(instance)
    data = "".join(json.dumps(row) + "\n" for row in INSTRUCTION_ROWS[:20]).encode()
    uploaded = client.files.create(file=("openai.jsonl", data), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.object == "file"
    assert (uploaded.filename, uploaded.purpose, uploaded.status) == (
        "openai.jsonl",
        "fine-tune",
        "processed",
    )
    assert uploaded.bytes == len(data) and uploaded.created_at > 0

    created = client.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=uploaded.id,
        hyperparameters={"n_epochs": 1},
        suffix="from-openai",
    )
    assert created.object == "fine_tuning.job" and created.id.startswith("ftjob-")
    assert (created.model, created.training_file, created.suffix) == (
        "tiny-llama",
        uploaded.id,
        "from-openai",
    )
    assert created.status in ("queued", "validating_files", "running")
    assert created.hyperparameters.n_epochs == 1
    assert created.method is not None and created.method.type == "supervised"
    cancelled = client.fine_tuning.jobs.cancel(created.id)
    assert cancelled.id == created.id and (cancelled.status == "cancelled" or cancelled.cancel_requested)  # type: ignore[attr-defined]

    again = client.fine_tuning.jobs.retrieve(finished_job.id)
    assert (again.id, again.status, again.training_file) == (
        finished_job.id,
        "succeeded",
        finished_job.file_id,
    )
    assert again.fine_tuned_model and again.finished_at and again.trained_tokens
    assert again.error is None or again.error.message == ""

    first = client.fine_tuning.jobs.list(limit=1)
    assert len(first.data) == 1 and first.has_more and first.data[0].id == created.id  # newest first
    every = [job.id for job in client.fine_tuning.jobs.list(limit=1)]  # iterating fetches every page
    with instance.client() as rest:
        listed = rest.get("/api/v1/fine_tuning/jobs", params={"limit": 100}).json()["data"]
    assert every == [job["id"] for job in listed] and finished_job.id in every
    following = client.fine_tuning.jobs.list(limit=1, after=every[0])
    assert [job.id for job in following.data] == [every[1]]

    events = client.fine_tuning.jobs.list_events(finished_job.id, limit=5)
    assert len(events.data) == 5 and events.has_more
    assert all(e.object == "fine_tuning.job.event" and e.id.startswith("ftevent-") for e in events.data)
    assert all(e.level in ("info", "warning", "error") and e.message for e in events.data)
    all_events = list(client.fine_tuning.jobs.list_events(finished_job.id, limit=5))
    assert len(all_events) > 5 and len({e.id for e in all_events}) == len(all_events)

    checkpoints = client.fine_tuning.jobs.checkpoints.list(finished_job.id)
    assert checkpoints.data, "the finished job has no checkpoints"
    for checkpoint in checkpoints.data:
        assert checkpoint.object == "fine_tuning.job.checkpoint" and checkpoint.id.startswith("ftckpt-")
        assert checkpoint.fine_tuning_job_id == finished_job.id and checkpoint.step_number > 0
        assert checkpoint.fine_tuned_model_checkpoint.endswith(
            f":{finished_job.id}:ckpt-{checkpoint.step_number}"
        )
        assert checkpoint.metrics.step == checkpoint.step_number and checkpoint.metrics.train_loss is not None


def test_errors_surface_as_the_clients_exceptions_with_our_messages(instance: Instance) -> None:
    client = connect(instance)
    with pytest.raises(openai.NotFoundError, match="no fine-tuning job with id 'ftjob-nope'"):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.BadRequestError) as bad:
        client.fine_tuning.jobs.create(model="tiny-llama", training_file="file-nope")
    assert "file-nope" in bad.value.message and bad.value.code == "invalid_training_file"
    with pytest.raises(openai.UnprocessableEntityError, match="line 1"):
        client.files.create(file=("broken.jsonl", b'{"instruction": "no output"}\n'), purpose="fine-tune")
    with pytest.raises(openai.AuthenticationError, match="revoked, or never issued"):
        connect(instance, key="td-not-a-key").fine_tuning.jobs.list()
