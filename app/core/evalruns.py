"""Making an eval run, for both sides: the API checks a run and calls ``queue_run``; the training
worker calls ``queue_job_evals`` when a job that names evals saves a checkpoint or ends, so each
checkpoint is graded on the short lane while training goes on.

A run takes a snapshot of its items when it is made (``evals/<run id>/items.jsonl`` in the
artifact store): a file or job deleted later does not change a run that used it.
"""

import json
import logging
from typing import Any

from sqlmodel import Session

from app.core.db import after_commit
from app.core.events import add_event
from app.core.ids import new_underscored_id
from app.core.queue import EVAL_TASK, send_short_task
from app.core.rows import read_split, to_messages
from app.core.storage import ArtifactStore
from app.core.tables import Eval, EvalRun, Job

log = logging.getLogger(__name__)

# How a job's own checkpoints answer: greedy, short, so runs are comparable across checkpoints.
CHECKPOINT_SAMPLING = {"temperature": 0, "max_completion_tokens": 128}


def items_key(run_id: str) -> str:
    return f"evals/{run_id}/items.jsonl"


def validation_items(
    store: ArtifactStore, training_file: str, validation_file: str | None
) -> list[dict[str, Any]]:
    """A job's validation rows as items: ``input`` (the last user turn), ``reference`` (the
    answer), ``messages`` (the conversation up to the answer, for ``item_reference``).
    Raises FileNotFoundError when the dataset's files are gone from the store."""
    if validation_file:
        rows = [
            r
            for split in ("train", "validation")
            for r in read_split(store=store, dataset_id=validation_file, split=split)
        ]
    else:
        rows = read_split(store=store, dataset_id=training_file, split="validation")
    items = []
    for row in rows:
        messages = to_messages(row)
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            continue
        users = [m for m in messages[:-1] if m["role"] == "user"]
        if not users:
            continue
        item = {
            "input": users[-1]["content"],
            "reference": messages[-1]["content"],
            "messages": messages[:-1],
        }
        items.append({"item": item})
    return items


def queue_run(
    session: Session,
    store: ArtifactStore,
    *,
    row: Eval,
    model: str,
    source: dict[str, Any],
    items: list[dict[str, Any]],
    name: str,
    private: bool,
    owner_id: int | None,
    owner: str | None,
    meta: dict[str, str] | None = None,
) -> EvalRun:
    """Store a checked run with its items' snapshot, and queue it for the short lane once committed."""
    run = EvalRun(
        id=new_underscored_id("evalrun"),
        eval_id=row.id,
        name=name,
        model=model,
        data_source=source,
        meta=meta,
        total=len(items),
        private=private,
        owner_id=owner_id,
        owner=owner,
        per_criterion={c["id"]: {"passed": 0, "failed": 0} for c in row.testing_criteria},
    )
    store.write_bytes(items_key(run.id), "".join(json.dumps(i) + "\n" for i in items).encode())
    session.add(run)
    session.flush()
    after_commit(session, lambda: send_short_task(EVAL_TASK, run.id))
    return run


def checkpoint_source(job: Job, model: str) -> dict[str, Any]:
    """The completions data source of a run of ``model`` (one of the job's) on its validation rows."""
    return {
        "type": "completions",
        "model": model,
        "source": {"type": "job_validation", "job_id": job.id},
        "sampling_params": dict(CHECKPOINT_SAMPLING),
    }


def queue_job_evals(
    session: Session, store: ArtifactStore, job: Job, model: str, label: str
) -> list[EvalRun]:
    """A run of each eval the job names (``evals`` in its body) on ``model``, one of its checkpoints
    or its adapter, over the job's validation rows. Checked when the job was made; an eval deleted
    since, or data gone, is skipped with an event on the job."""
    if not job.evals:
        return []
    try:
        items = validation_items(store, job.training_file, job.validation_file)
    except FileNotFoundError:
        add_event(
            session=session,
            job_id=job.id,
            message=f"Evals on {label} skipped: the job's dataset files are gone",
            level="warning",
        )
        return []
    runs = []
    for eval_id in job.evals:
        row = session.get(Eval, eval_id)
        if row is None:
            add_event(
                session=session,
                job_id=job.id,
                message=f"Eval {eval_id} on {label} skipped: the eval was deleted",
                level="warning",
            )
            continue
        runs.append(
            queue_run(
                session,
                store,
                row=row,
                model=model,
                source=checkpoint_source(job, model),
                items=items,
                name=f"{label} of {job.suffix or job.id}",
                private=job.private,
                owner_id=job.owner_id,
                owner=job.owner,
            )
        )
    if runs:
        names = ", ".join(r.eval_id for r in runs)
        add_event(session=session, job_id=job.id, message=f"Queued evals {names} on {label}")
    return runs
