"""Merge a job's LoRA adapter into its base with merge_and_unload, saved as safetensors.

The base is always reloaded in full precision, also for 4-bit (QLoRA) jobs: merging into
quantized weights would bake the quantization error in.
"""

import logging
from typing import Any

import torch
from sqlmodel import col, update

from app.core.db import read_session, session_scope
from app.core.events import add_event
from app.core.faults import pause
from app.core.logs import job_context
from app.core.spec import TrainingSpec
from app.core.storage import get_store
from app.core.tables import BaseModelRecord, Job, Merge, MergeStatus
from app.core.timeutil import utcnow

log = logging.getLogger(__name__)


def _update(merge_id: str, **values: object) -> None:
    with session_scope() as session:
        session.exec(update(Merge).where(col(Merge.id) == merge_id).values(**values))


class MergeCancelled(Exception):
    """Cancel was asked for; raised between stages so the half-written folder is discarded."""


def _progress(merge: Merge, fraction: float, message: str) -> None:
    """Move to the next stage, unless cancel was asked for (each stage is the bound on cancelling)."""
    pause("merge_delay")
    with session_scope() as session:
        moved = session.exec(
            update(Merge)
            .where(col(Merge.id) == merge.id, col(Merge.status) == MergeStatus.running)
            .values(progress=fraction, message=message)
        )
        if moved.rowcount != 1:
            raise MergeCancelled(merge.id)
        add_event(session=session, job_id=merge.job_id, message=f"Merge {round(fraction * 100)}%: {message}")


def run_merge(merge_id: str) -> str:
    """Run merge ``merge_id`` if it is still queued; return its final status. Log lines meanwhile
    carry the merged job's id."""
    with read_session() as session:
        merge = session.get(Merge, merge_id)
    with job_context(merge.job_id if merge else None):
        return _run_merge(merge_id)


def _run_merge(merge_id: str) -> str:
    with session_scope() as session:
        claimed = session.exec(
            update(Merge)
            .where(col(Merge.id) == merge_id, col(Merge.status) == MergeStatus.queued)
            .values(status=MergeStatus.running)
        )
        if claimed.rowcount != 1:
            return "skipped"
    with read_session() as session:
        merge = session.get(Merge, merge_id)
        job = session.get(Job, merge.job_id) if merge is not None else None
        base = session.get(BaseModelRecord, job.model) if job is not None else None
    if merge is None or job is None or not job.adapter_key:  # deleted meanwhile: nothing to merge
        return "skipped"
    try:
        if base is None:
            raise RuntimeError(f"base model {job.model!r} is no longer registered")
        key = f"jobs/{job.id}/merged"
        _merge(merge, base, job.adapter_key, key, TrainingSpec.model_validate(job.hyperparameters).task_type)
    except MergeCancelled:
        _update(merge_id, status=MergeStatus.cancelled, message="cancelled", finished_at=utcnow())
        with session_scope() as session:
            if session.get(Job, merge.job_id) is not None:  # not if the job is gone altogether
                add_event(session=session, job_id=merge.job_id, message="Merge cancelled; nothing was kept")
        return MergeStatus.cancelled.value
    except Exception as exc:
        log.exception("merge %s failed", merge_id)
        _update(
            merge_id,
            status=MergeStatus.failed,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=utcnow(),
        )
        with session_scope() as session:
            add_event(session=session, job_id=merge.job_id, message=f"Merge failed: {exc}", level="error")
        return MergeStatus.failed.value
    _update(
        merge_id,
        status=MergeStatus.succeeded,
        progress=1.0,
        message="done",
        artifact_key=key,
        finished_at=utcnow(),
    )
    with session_scope() as session:
        add_event(
            session=session, job_id=merge.job_id, message="Merged model saved (safetensors + tokenizer)"
        )
    return MergeStatus.succeeded.value


def _merge(merge: Merge, base: BaseModelRecord, adapter_key: str, key: str, task_type: str) -> None:
    from peft import PeftModel
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    store = get_store()
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    _progress(merge, 0.1, f"loading {base.id} in {str(dtype).removeprefix('torch.')} (unquantized)")
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "trust_remote_code": base.trust_remote_code,
        "use_safetensors": None if base.trust_remote_code else True,  # no pickle unless trusted
    }
    auto_class: Any = {
        "SEQ_2_SEQ_LM": AutoModelForSeq2SeqLM,
        "SEQ_CLS": AutoModelForSequenceClassification,
    }.get(task_type, AutoModelForCausalLM)
    adapter_dir = store.local_path(adapter_key)  # fetched once when the store is remote
    if task_type == "SEQ_CLS":  # the job saved its label names beside the adapter
        kwargs["config"] = AutoConfig.from_pretrained(str(adapter_dir))
    model = auto_class.from_pretrained(base.path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    _progress(merge, 0.4, "loading the adapter")
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    _progress(merge, 0.6, "merging the LoRA weights into the base (merge_and_unload)")
    merged = model.merge_and_unload()
    _progress(merge, 0.8, "saving safetensors and the tokenizer")
    with store.new_folder(key) as folder:  # published only if the block ends without an exception
        merged.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        _progress(merge, 0.95, "publishing the merged model")
