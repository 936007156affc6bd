"""Base models: register a local folder of safetensors weights, list and look them up."""

import json
import re
from collections import Counter
from dataclasses import dataclass
from math import prod
from pathlib import Path

from sqlmodel import Session, col, func, select

from app.basemodels.inspect import UnreadableModel, read_safetensors_header
from app.core.errors import InvalidRequest, NotFound
from app.core.tables import BaseModelRecord, Checkpoint, DatasetFile, Job, JobStatus, Merge, MergeStatus

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class ModelFolderInvalid(InvalidRequest):
    """The folder cannot be registered; the message says why."""

    param = "model"
    code = "invalid_model"


class ModelPathNotAllowed(ModelFolderInvalid):
    """The path lies outside the folders admins may register models from (TUNEDECK_MODEL_ROOTS)."""

    param = "path"
    code = "invalid_path"


def allowed_model_folder(path: str, roots: list[Path]) -> Path:
    """The folder ``path`` names (absolute, or relative to a root), symlinks followed, if it lies
    under one of ``roots``; ModelPathNotAllowed otherwise."""
    where = ", ".join(str(root) for root in roots) or "none configured"
    hint = f"register folders under one of the model roots: {where} (TUNEDECK_MODEL_ROOTS)"
    raw = Path(path)
    # An absolute path may lie under any root; a relative one must stay inside the root it is joined to.
    tries = [(roots, raw)] if raw.is_absolute() else [([root], root / raw) for root in roots]
    try:
        candidates = [(within, joined.resolve()) for within, joined in tries]
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        raise ModelPathNotAllowed(f"{path!r} is not a usable path; {hint}") from None
    for within, candidate in candidates:
        if not any(candidate.is_relative_to(root) for root in within):
            raise ModelPathNotAllowed(f"{path!r} leads outside the allowed folders; {hint}")
    folder = next((candidate for _, candidate in candidates if _is_folder(candidate)), None)
    if folder is None:
        raise ModelPathNotAllowed(f"there is no folder {path!r} under the model roots; {hint}")
    return folder


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for the file system, say
        return False


def check_model_folder(folder: Path, *, trust_remote_code: bool = False) -> tuple[str, int]:
    """Refuse folders we must not load; return (architecture, parameter count)."""
    if not (folder / "config.json").is_file():
        raise ModelFolderInvalid(f"{folder} has no config.json")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        detail = f" (found pickle weights {pickles}, which tunedeck never loads)" if pickles else ""
        raise ModelFolderInvalid(
            f"{folder} has no *.safetensors weights{detail}; convert them to safetensors"
        )
    code = sorted(p.name for p in folder.glob("*.py"))
    if code and not trust_remote_code:
        raise ModelFolderInvalid(f"{folder} ships Python code {code}; an admin must allow trust_remote_code")
    if not (folder / "tokenizer.json").is_file():
        raise ModelFolderInvalid(f"{folder} has no tokenizer.json (a fast tokenizer is required)")
    config = json.loads((folder / "config.json").read_text("utf-8"))
    architecture = (config.get("architectures") or [config.get("model_type", "")])[0]
    return str(architecture), sum(_safetensors_params(path) for path in weights)


def _safetensors_params(path: Path) -> int:
    """Parameters in a safetensors file, read from its header (no torch)."""
    try:
        header = read_safetensors_header(path)
    except UnreadableModel as exc:
        raise ModelFolderInvalid(str(exc)) from None
    return sum(prod(entry["shape"]) for entry in header.values())


def register_model(
    *,
    session: Session,
    name: str,
    folder: Path,
    description: str = "",
    trust_remote_code: bool = False,
) -> BaseModelRecord:
    """Add (or refresh) base model ``name`` pointing at ``folder``."""
    if not NAME_PATTERN.match(name):
        raise ModelFolderInvalid("model names use lowercase letters, digits, '.', '_' and '-'")
    folder = folder.resolve()
    architecture, n_params = check_model_folder(folder, trust_remote_code=trust_remote_code)
    record = session.get(BaseModelRecord, name) or BaseModelRecord(id=name, path=str(folder))
    record.path, record.description = str(folder), description
    record.architecture, record.n_params = architecture, n_params
    record.trust_remote_code = trust_remote_code
    session.add(record)
    session.flush()
    return record


def set_trust_remote_code(*, session: Session, model_id: str, allowed: bool) -> BaseModelRecord:
    """Allow (or stop allowing) base model ``model_id``'s own Python code when it is loaded."""
    record = get_model(session=session, model_id=model_id)
    record.trust_remote_code = allowed
    session.add(record)
    session.flush()
    return record


def get_model(*, session: Session, model_id: str) -> BaseModelRecord:
    """Base model ``model_id`` or NotFound naming the available ones."""
    record = session.get(BaseModelRecord, model_id)
    if record is None:
        names = ", ".join(m.id for m in list_models(session=session)) or "none registered"
        raise NotFound(f"no base model {model_id!r} (available: {names})")
    return record


def list_models(*, session: Session) -> list[BaseModelRecord]:
    return list(session.exec(select(BaseModelRecord).order_by(col(BaseModelRecord.id))).all())


def list_adapters(*, session: Session) -> list[Job]:
    """Finished jobs whose adapters can be downloaded or served."""
    query = select(Job).where(Job.status == JobStatus.succeeded).order_by(col(Job.finished_at).desc())
    return list(session.exec(query).all())


@dataclass(frozen=True)
class Lineage:
    """Where a finished adapter came from and what it led to."""

    job: Job
    dataset: DatasetFile | None  # None when the file was deleted
    parent: DatasetFile | None  # the dataset it was cleaned from, if any
    merged: bool  # the latest merge succeeded, so the merged model can be downloaded
    checkpoints: int


def adapter_lineages(*, session: Session) -> list[Lineage]:
    """Each succeeded job with its dataset (and that dataset's parent), merge and checkpoints."""
    jobs = list_adapters(session=session)
    ids = [job.id for job in jobs]
    files = _files(session, {job.training_file for job in jobs})
    parents = _files(session, {f.parent_id for f in files.values() if f.parent_id})
    merges = session.exec(
        select(Merge).where(col(Merge.job_id).in_(ids)).order_by(col(Merge.created_at))
    ).all()
    latest = {merge.job_id: merge for merge in merges}  # the newest wins, as the download uses it
    counts = session.exec(
        select(Checkpoint.job_id, func.count())
        .where(col(Checkpoint.job_id).in_(ids))
        .group_by(col(Checkpoint.job_id))
    ).all()
    checkpoints = {job_id: int(n) for job_id, n in counts}
    lineages = []
    for job in jobs:
        dataset = files.get(job.training_file)
        merge = latest.get(job.id)
        lineages.append(
            Lineage(
                job=job,
                dataset=dataset,
                parent=parents.get(dataset.parent_id) if dataset and dataset.parent_id else None,
                merged=merge is not None
                and merge.status == MergeStatus.succeeded
                and bool(merge.artifact_key),
                checkpoints=checkpoints.get(job.id, 0),
            )
        )
    return lineages


def adapter_counts(lineages: list[Lineage]) -> dict[str, int]:
    """Base model id → adapters trained on it."""
    return dict(Counter(lineage.job.model for lineage in lineages))


def _files(session: Session, ids: set[str | None]) -> dict[str, DatasetFile]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return {f.id: f for f in session.exec(select(DatasetFile).where(col(DatasetFile.id).in_(wanted))).all()}
