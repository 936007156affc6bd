"""A job's stored dataset rows, turned into what each task's trainer reads."""

from typing import Any

from app.core.rows import read_split, to_messages
from app.core.storage import ArtifactStore
from app.core.tables import Job


class TrainingDataError(ValueError):
    """The job's data cannot be trained on; the message says why."""


def load_job_rows(store: ArtifactStore, job: Job) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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


def to_source_target(row: dict[str, Any]) -> dict[str, str]:
    """An instruction row as seq2seq text: (system,) instruction and input → source; output → target."""
    if "instruction" not in row or "output" not in row:
        raise TrainingDataError(
            "SEQ_2_SEQ_LM trains on instruction rows (instruction, input, output); "
            "upload the data in that format"
        )
    parts = [row.get("system", ""), row["instruction"], row.get("input", "")]
    return {"source": "\n\n".join(part for part in parts if part), "target": row["output"]}


def label_set(rows: list[dict[str, Any]]) -> list[str]:
    """The distinct labels of classification rows, in a stable order (numerically when all are numbers)."""
    if any("label" not in row or "text" not in row for row in rows):
        raise TrainingDataError("SEQ_CLS trains on classification rows (text, label); upload those")
    labels = {str(row["label"]) for row in rows}
    if len(labels) < 2:
        raise TrainingDataError(f"the training split has one label only ({labels.pop()}): nothing to learn")
    numeric = all(label.lstrip("-").isdigit() for label in labels)
    return sorted(labels, key=lambda label: (int(label), label) if numeric else (0, label))
