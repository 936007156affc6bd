"""What tests make over and over, made one way: data rows, uploaded files and jobs (through the
API, as a user would), and a job run to its end in this process (as a worker would).

Each helper asserts the API said yes, so a test that needs a file or a job reads as one line and
fails at the step that went wrong. Tests of refusals post themselves and read the answer.
"""

import json
from typing import Any

import httpx

QUICK = {  # a few seconds on the tiny model: one epoch, a point per step, short sequences
    "n_epochs": 1,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-3,
    "logging_steps": 1,
    "max_seq_length": 128,
    "gradient_checkpointing": False,
}

INSTRUCTION_ROWS = [  # 40 rows the tiny model can learn something from
    {"instruction": f"What is {a} plus {b}?", "input": "", "output": f"{a} plus {b} is {a + b}."}
    for a in range(8)
    for b in range(5)
]


def instruction_rows(
    n: int, question: str = "Question {i}?", answer: str = "Answer {i}."
) -> list[dict[str, str]]:
    """``n`` distinct instruction rows (none a duplicate of another, so none is dropped)."""
    return [
        {"instruction": question.format(i=i), "input": "", "output": answer.format(i=i)} for i in range(n)
    ]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def upload(
    client: httpx.Client,
    rows: list[dict[str, Any]] | None = None,
    *,
    filename: str = "d.jsonl",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    **form: str,
) -> str:
    """Upload ``rows`` (or raw ``data``; default: INSTRUCTION_ROWS) and return the file's id."""
    body = data if data is not None else jsonl(INSTRUCTION_ROWS if rows is None else rows)
    response = client.post(
        "/api/v1/files",
        files={"file": (filename, body)},
        data={"purpose": "fine-tune", **form},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def create_job(
    client: httpx.Client,
    model: str,
    file_id: str,
    *,
    hp: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> str:
    """Create a job on ``file_id`` with QUICK hyperparameters (``hp`` overrides them) and return its id."""
    body = {"model": model, "training_file": file_id, "hyperparameters": {**QUICK, **(hp or {})}, **fields}
    response = client.post("/api/v1/fine_tuning/jobs", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def events(client: httpx.Client, job_id: str) -> list[str]:
    """The job's event messages, oldest first."""
    data = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 200}).json()["data"]
    return [event["message"] for event in reversed(data)]


def run_job(job_id: str, worker_name: str = "test-worker") -> str:
    """Run job ``job_id`` to its end in this process if it may run now, as a worker woken for it
    would; return the outcome ("succeeded", "failed", "cancelled", "retrying", "skipped", …)."""
    import torch

    from app.core.scheduling import claim_next, pass_on
    from worker.training.runner import run_claimed

    claimed = claim_next(worker=worker_name, memory_bytes=None, gpus=torch.cuda.device_count(), only=job_id)
    if claimed is None:
        pass_on(job_id, None, None)  # a retry that came before its backoff ended waits for the rest
        return "skipped"
    return run_claimed(claimed, worker_name)
