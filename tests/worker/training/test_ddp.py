"""A data-parallel job: two CPU processes (gloo) launched by torchrun from the worker's runner.

Rank 0 alone reports and saves: every step appears once in the curve, each checkpoint holds
both ranks' RNG states, and the adapter matches a one-process job's tensor for tensor in name
and shape and loads with peft.
"""

from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.core import metric_names
from app.core.db import read_session
from app.core.storage import get_store
from app.core.tables import Checkpoint, Metric
from tests.factories import INSTRUCTION_ROWS, create_job, events, upload
from worker.training.ddp_entry import DistributedTrainingError, conclude, result_path
from worker.training.reporting import JobCancelled

STEPS = 3  # 14 training rows, 4 per process: 2 steps per epoch, so an epoch-end checkpoint and evaluation


def adapter_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as tensors:
        return {name: tuple(tensors.get_slice(name).get_shape()) for name in tensors.keys()}  # noqa: SIM118


@pytest.mark.slow
def test_two_cpu_processes_train_once_per_step_and_save_a_loadable_adapter(
    client: TestClient, tiny_model: str, tiny_model_dir: Path, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("one database is enough for the process plumbing")
    file_id = upload(client, INSTRUCTION_ROWS[:16])
    ddp_job = create_job(client, tiny_model, file_id, hp={"num_processes": 2, "max_steps": STEPS})
    single_job = create_job(client, tiny_model, file_id, hp={"max_steps": 1})

    from tests.factories import run_job

    status = run_job(ddp_job, "test-worker")
    assert status == "succeeded", client.get(f"/api/v1/fine_tuning/jobs/{ddp_job}").json()["error"]
    assert run_job(single_job, "test-worker") == "succeeded"

    messages = events(client, ddp_job)
    assert any(m.startswith("Training on 2 processes (gloo)") for m in messages), messages
    assert sum(m.startswith("Training started") for m in messages) == 1  # rank 1 reports nothing
    with read_session() as session:
        points = session.exec(select(Metric).where(Metric.job_id == ddp_job)).all()
        checkpoints = session.exec(select(Checkpoint).where(Checkpoint.job_id == ddp_job)).all()
    # The epoch point comes with the train log and again with the evaluation at the same step.
    per_step = Counter((p.key, p.step) for p in points if p.key != metric_names.EPOCH)
    assert max(per_step.values()) == 1
    assert sorted(p.step for p in points if p.key == metric_names.TRAIN_LOSS) == list(range(1, STEPS + 1))
    assert any(p.key == metric_names.VALID_LOSS for p in points)

    store = get_store()
    assert checkpoints
    for checkpoint in checkpoints:  # written by rank 0, for both ranks
        saved = {p.name for p in store.local_path(checkpoint.artifact_key).iterdir()}
        assert {"rng_state_0.pth", "rng_state_1.pth", "adapter_model.safetensors"} <= saved
    assert not store.exists(f"jobs/{ddp_job}/staging")

    adapter = store.local_path(f"jobs/{ddp_job}/adapter")
    assert adapter_shapes(adapter) == adapter_shapes(store.local_path(f"jobs/{single_job}/adapter"))

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(adapter))
    assert model.get_nb_trainable_parameters()[0] == 0  # loaded for inference, with LoRA weights
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_the_parent_raises_what_the_most_telling_rank_reported(tmp_path: Path) -> None:
    import json

    def report(rank: int, kind: str, message: str) -> None:
        error = {"kind": kind, "type": "X", "message": message, "traceback": "..."}
        result_path(tmp_path, rank).write_text(json.dumps({"error": error}))

    report(0, "error", "Connection closed by peer")  # rank 0 saw rank 1 go
    report(1, "cancelled", "during evaluation at step 2")
    with pytest.raises(JobCancelled, match="during evaluation"):
        conclude(tmp_path, 2, 1, "ftjob-x")
    result_path(tmp_path, 1).unlink()
    with pytest.raises(DistributedTrainingError, match="rank 0 of 2: X: Connection closed"):
        conclude(tmp_path, 2, 1, "ftjob-x")
    result_path(tmp_path, 0).unlink()
    (tmp_path / "torchrun.log").write_text("ChildFailedError: rank 1 (pid 12) got signal 9")
    with pytest.raises(DistributedTrainingError, match="got signal 9"):
        conclude(tmp_path, 2, -9, "ftjob-x")
