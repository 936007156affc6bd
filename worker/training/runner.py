"""Run one job: claim it, validate its data, train, and record how it ended."""

import gc
import logging
import traceback

import torch
from sqlmodel import col, update

from app.db import read_session, session_scope
from app.models import BaseModelRecord, Job, JobStatus
from app.spec import TrainingSpec
from app.storage import get_store
from app.timeutil import utcnow
from worker.training.classification import train_classifier
from worker.training.data import TrainingDataError, load_job_rows
from worker.training.pipeline import ModelLoadError, TrainOutcome, train_adapter
from worker.training.reporting import JobReporter
from worker.training.seq2seq import train_seq2seq

# Every task trains with the same keyword arguments and returns a TrainOutcome.
TRAINERS = {"CAUSAL_LM": train_adapter, "SEQ_CLS": train_classifier, "SEQ_2_SEQ_LM": train_seq2seq}

log = logging.getLogger(__name__)


def claim_job(job_id: str, worker_name: str) -> bool:
    """Move the job from queued to validating_files; False if someone else has it (or it was cancelled)."""
    with session_scope() as session:
        result = session.exec(
            update(Job)
            .where(
                col(Job.id) == job_id,
                col(Job.status) == JobStatus.queued,
                col(Job.cancel_requested).is_(False),
            )
            .values(
                status=JobStatus.validating_files,
                worker=worker_name,
                started_at=utcnow(),
                heartbeat_at=utcnow(),
            )
        )
        return result.rowcount == 1


def run_job(job_id: str, worker_name: str) -> str:
    """Run job ``job_id`` to its end; returns the final status."""
    if not claim_job(job_id, worker_name):
        log.info("job %s is not queued any more; skipping", job_id)
        return "skipped"
    reporter = JobReporter(job_id)
    reporter.event(f"Job started on worker {worker_name}")
    try:
        status = _run(job_id, reporter)
    except TrainingDataError as exc:
        status = _fail(reporter, "invalid_training_file", f"Bad training data: {exc}")
    except ModelLoadError as exc:
        status = _fail(reporter, "model_load_failed", f"Model load failure: {exc}")
    except (torch.OutOfMemoryError, MemoryError):
        spec = _spec(job_id)
        status = _fail(
            reporter,
            "out_of_memory",
            f"Out of memory while training (batch_size {spec.batch_size}, "
            f"max_seq_length {spec.max_seq_length}): "
            "lower batch_size or max_seq_length, enable gradient checkpointing, or use 4-bit quantization",
        )
    except Exception as exc:
        log.exception("job %s failed", job_id)
        status = _fail(
            reporter,
            "internal_error",
            f"Training failed: {type(exc).__name__}: {exc}",
            traceback.format_exc(),
        )
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return status


def _spec(job_id: str) -> TrainingSpec:
    with read_session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return TrainingSpec.model_validate(job.hyperparameters)


def _run(job_id: str, reporter: JobReporter) -> str:
    store = get_store()
    with read_session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        base = session.get(BaseModelRecord, job.model)
    if base is None:
        raise ModelLoadError(f"base model {job.model!r} is no longer registered")
    spec = TrainingSpec.model_validate(job.hyperparameters)
    reporter.event(f"Validating training data for task {spec.task_type}")
    train_rows, validation_rows = load_job_rows(store, job)
    reporter.event(f"{len(train_rows)} training rows, {len(validation_rows)} validation rows")
    if not validation_rows:
        reporter.event("No validation rows: overfitting will not be visible", level="warning")
    if reporter.cancel_requested():
        return _cancelled(reporter, "before training started")
    reporter.set_status(JobStatus.running)
    adapter_key = f"jobs/{job_id}/adapter"
    try:
        with store.new_folder(adapter_key) as adapter_dir:
            outcome = TRAINERS[spec.task_type](
                spec=spec,
                model_path=base.path,
                train_rows=train_rows,
                validation_rows=validation_rows,
                adapter_dir=adapter_dir,
                store=store,
                reporter=reporter,
                seed=job.seed,
                trust_remote_code=base.trust_remote_code,
            )
            if outcome.cancelled or outcome.diverged:
                raise _Stopped(outcome)
    except _Stopped as stop:
        if stop.outcome.diverged:
            alert = stop.outcome.diverged
            remedies = "; ".join(alert.remedies)
            return _fail(reporter, "loss_diverged", f"{alert.message}. Try, in order: {remedies}")
        return _cancelled(reporter, f"at step {stop.outcome.global_step}")
    finally:
        store.delete(f"jobs/{job_id}/staging")
    reporter.set_status(
        JobStatus.succeeded,
        finished_at=utcnow(),
        adapter_key=adapter_key,
        fine_tuned_model=f"{job.model}:{job_id}",
    )
    reporter.event(
        f"Job succeeded after {outcome.global_step} steps; adapter saved",
        data={"adapter": adapter_key},
    )
    return JobStatus.succeeded.value


class _Stopped(Exception):
    """Raised inside the adapter folder's scope so that its temporary folder is discarded."""

    def __init__(self, outcome: TrainOutcome) -> None:
        self.outcome = outcome


def _cancelled(reporter: JobReporter, when: str) -> str:
    reporter.set_status(JobStatus.cancelled, finished_at=utcnow())
    reporter.event(f"Job cancelled {when}")
    return JobStatus.cancelled.value


def _fail(reporter: JobReporter, code: str, message: str, detail: str | None = None) -> str:
    reporter.set_status(
        JobStatus.failed,
        finished_at=utcnow(),
        error={"code": code, "message": message, "param": None},
    )
    reporter.event(message, level="error", data={"traceback": detail[-4000:]} if detail else None)
    return JobStatus.failed.value
