"""Turn a job's stored dataset rows into trl's conversational prompt-completion format."""

from typing import Any

from app.datasets.parsing import to_messages
from app.datasets.service import read_split
from app.models import Job
from app.storage import LocalArtifactStore


class TrainingDataError(ValueError):
    """The job's data cannot be trained on; the message says why."""


def load_job_rows(store: LocalArtifactStore, job: Job) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, validation rows): the training file's split, or all of it plus a validation file."""
    try:
        if job.validation_file:
            train = [
                r
                for s in ("train", "validation")
                for r in read_split(store=store, dataset_id=job.training_file, split=s)
            ]
            validation = [
                r
                for s in ("train", "validation")
                for r in read_split(store=store, dataset_id=job.validation_file, split=s)
            ]
        else:
            train = read_split(store=store, dataset_id=job.training_file, split="train")
            validation = read_split(store=store, dataset_id=job.training_file, split="validation")
    except FileNotFoundError as exc:
        raise TrainingDataError(
            f"dataset files are missing from the artifact store: {exc.filename}"
        ) from None
    if not train:
        raise TrainingDataError("the training split has no rows")
    return train, validation


def to_prompt_completion(row: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Everything before the last assistant turn is the prompt; loss falls on the completion."""
    messages = to_messages(row)
    return {"prompt": messages[:-1], "completion": messages[-1:]}
