"""Every servable model under a stable name.

- ``<base>``: a registered base model, e.g. ``smollm2-135m-instruct``
- ``<base>:<job>``: a finished job's LoRA adapter on that base
- ``<base>:<job>:ckpt-<step>``: one of its checkpoints (also of jobs still running)
- ``<base>:<job>:merged``: its merged model, loaded as a plain model

Only causal language models chat; classifier and seq2seq jobs are not listed (``task="SEQ_CLS"``
lists a classifier job's models under the same names, for classification evals, and no bases).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlmodel import Session, col, select

from app.core.storage import ArtifactStore
from app.core.tables import BaseModelRecord, Checkpoint, Job, JobStatus, Merge, MergeStatus
from app.core.visibility import visible_clause

Kind = Literal["base", "adapter", "checkpoint", "merged"]


@dataclass(frozen=True)
class ServedModel:
    id: str
    kind: Kind
    base: str  # the base model's id
    base_path: str
    path: str  # the folder to load: the base, the adapter, the checkpoint or the merged model
    created: datetime
    job_id: str | None = None
    trust_remote_code: bool = False
    # The artifact behind ``path`` (None for a base): load it through ``store.local_path(key)``,
    # which fetches a copy when the store is remote (then ``path`` only says where it is).
    artifact_key: str | None = None


def _task(job: Job) -> str:
    return str(job.hyperparameters.get("task_type", "CAUSAL_LM"))


def served_models(
    session: Session,
    store: ArtifactStore,
    *,
    job_id: str | None = None,
    viewer_id: int | None = None,
    task: str = "CAUSAL_LM",
) -> list[ServedModel]:
    """Base models, then adapters, checkpoints and merged models, newest first within each;
    ``job_id`` narrows the jobs' part to that one job (what ``resolve`` needs per request);
    ``viewer_id`` leaves out other users' private jobs (None: an admin, who sees all); ``task``
    another task type's jobs' models instead (then no bases: a bare base has no such head)."""
    bases = {b.id: b for b in session.exec(select(BaseModelRecord).order_by(col(BaseModelRecord.id))).all()}
    out = [
        ServedModel(b.id, "base", b.id, b.path, b.path, b.created_at, trust_remote_code=b.trust_remote_code)
        for b in bases.values()
        if task == "CAUSAL_LM"
    ]
    job_query = select(Job).order_by(col(Job.finished_at).desc(), col(Job.created_at).desc())
    checkpoint_query = select(Checkpoint).order_by(col(Checkpoint.step).desc())
    merge_query = (
        select(Merge).where(Merge.status == MergeStatus.succeeded).order_by(col(Merge.finished_at).desc())
    )
    if job_id is not None:
        job_query = job_query.where(Job.id == job_id)
        checkpoint_query = checkpoint_query.where(Checkpoint.job_id == job_id)
        merge_query = merge_query.where(Merge.job_id == job_id)
    job_query = job_query.where(visible_clause(Job, viewer_id))
    jobs = {j.id: j for j in session.exec(job_query).all() if j.model in bases and _task(j) == task}

    def entry(job: Job, name: str, kind: Kind, key: str, created: datetime) -> ServedModel:
        base = bases[job.model]
        return ServedModel(
            name, kind, base.id, base.path, store.location(key), created, job.id, base.trust_remote_code, key
        )

    for job in jobs.values():
        if job.status == JobStatus.succeeded and job.adapter_key:
            out.append(
                entry(
                    job,
                    f"{job.model}:{job.id}",
                    "adapter",
                    job.adapter_key,
                    job.finished_at or job.created_at,
                )
            )
    for checkpoint in session.exec(checkpoint_query).all():
        owner = jobs.get(checkpoint.job_id)
        if owner is not None:
            name = f"{owner.model}:{owner.id}:ckpt-{checkpoint.step}"
            out.append(entry(owner, name, "checkpoint", checkpoint.artifact_key, checkpoint.created_at))
    for merge in session.exec(merge_query).all():
        merged_job = jobs.get(merge.job_id)
        if merged_job is not None and merge.artifact_key:
            created = merge.finished_at or merge.created_at
            name = f"{merged_job.model}:{merged_job.id}:merged"
            out.append(entry(merged_job, name, "merged", merge.artifact_key, created))
    return out


def resolve(
    session: Session, store: ArtifactStore, name: str, *, viewer_id: int | None = None
) -> ServedModel | None:
    """The model called ``name``, or None (reads only the job the name refers to)."""
    parts = name.split(":")
    job_id = parts[1] if len(parts) > 1 else ""  # a base's name has no job part: no job matches ""
    for model in served_models(session, store, job_id=job_id, viewer_id=viewer_id):
        if model.id == name:
            return model
    return None


def merged_models(*, session: Session) -> list[tuple[Merge, str, Job]]:
    """Finished merges, newest first, with the served name of each merged model and its job."""
    query = (
        select(Merge, Job)
        .join(Job, col(Job.id) == col(Merge.job_id))
        .where(Merge.status == MergeStatus.succeeded)
        .order_by(col(Merge.finished_at).desc())
    )
    return [(merge, f"{job.model}:{job.id}:merged", job) for merge, job in session.exec(query).all()]
