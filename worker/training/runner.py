"""Run one job: claim it, validate its data, train, and record how it ended."""

import errno
import gc
import logging
import shutil
import traceback
from pathlib import Path

import torch

from app.core.db import read_session, session_scope
from app.core.faults import pause
from app.core.leases import retry_or_fail
from app.core.logs import job_context
from app.core.queue import GIB
from app.core.scheduling import Claim, claim_next, pass_on, wake_owner
from app.core.spec import TrainingSpec
from app.core.storage import ArtifactStore, get_store
from app.core.tables import BaseModelRecord, Job, JobStatus
from app.core.timeutil import utcnow
from worker.beacon import advertised_memory_gib
from worker.heartbeat import Heartbeat
from worker.training.data import TrainingDataError, load_job_rows
from worker.training.ddp_entry import NotEnoughDevices, train_distributed
from worker.training.pipeline import ModelLoadError, TrainOutcome, resolve_checkpointing
from worker.training.registry import TRAINERS
from worker.training.reporting import FencedOff, JobCancelled, JobReporter

log = logging.getLogger(__name__)


def run_next(woken_by: str, worker_name: str) -> str:
    """The training task: a message only wakes this worker, which takes the best waiting job it can
    hold (app/core/scheduling.py) — usually ``woken_by``, else a job of higher priority."""
    memory = advertised_memory_gib()
    claimed = claim_next(
        worker=worker_name,
        memory_bytes=None if memory is None else int(memory * GIB),
        gpus=torch.cuda.device_count(),
    )
    pass_on(woken_by, claimed.job_id if claimed else None, memory)
    if claimed is None:
        log.info("woken for job %s, but no waiting job may run on this worker now; skipping", woken_by)
        return "skipped"
    log.info("woken for job %s; taking job %s", woken_by, claimed.job_id)
    return run_claimed(claimed, worker_name)


def run_claimed(claimed: Claim, worker_name: str) -> str:
    """Run the claimed attempt to its end; log lines meanwhile carry the job's id."""
    job_id, fence = claimed.job_id, claimed.fence
    try:
        with (
            job_context(job_id),
            Heartbeat(job_id, fence) as heartbeat,
            JobReporter(job_id, fence, heartbeat.lost) as reporter,
        ):
            try:
                log.info("job %s: attempt %s started on worker %s", job_id, fence, worker_name)
                reporter.event(f"Attempt {fence} started on worker {worker_name}")
                return _attempt(job_id, reporter)
            except FencedOff:
                log.warning("job %s: attempt %s lost its lease; another attempt owns the job", job_id, fence)
                return "fenced"
            finally:
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    finally:
        wake_owner(_owner_of(job_id))  # a slot of theirs is free: their next job may start


def _owner_of(job_id: str) -> int | None:
    with read_session() as session:
        job = session.get(Job, job_id)
        return job.owner_id if job else None


def _attempt(job_id: str, reporter: JobReporter) -> str:
    """One attempt; permanent errors fail the job, transient ones retry it with backoff."""
    try:
        return _run(job_id, reporter)
    except FencedOff:
        raise
    except JobCancelled as stop:
        if reporter.fenced:
            raise FencedOff(job_id) from None
        return _cancelled(reporter, stop.when)
    except TrainingDataError as exc:
        return _fail(reporter, "invalid_training_file", f"Bad training data: {exc}")
    except ModelLoadError as exc:
        return _fail(reporter, "model_load_failed", f"Model load failure: {exc}")
    except NotEnoughDevices as exc:
        return _fail(reporter, "not_enough_devices", str(exc))
    except (torch.OutOfMemoryError, MemoryError):
        spec = _spec(job_id)
        message = (
            f"Out of memory while training (batch_size {spec.batch_size}, "
            f"max_seq_length {spec.max_seq_length}): "
            "lower batch_size or max_seq_length, enable gradient checkpointing, or use 4-bit quantization"
        )
        return _retry(reporter, "out_of_memory", message)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        if _no_space_left(exc):
            return _fail(reporter, "disk_full", _disk_full_message(reporter))
        return _retry(
            reporter,
            "internal_error",
            f"Training failed: {type(exc).__name__}: {exc}",
            traceback.format_exc(),
        )


def _no_space_left(exc: BaseException) -> bool:
    """A full disk, however the writer reported it (OSError, torch's stream writer, safetensors)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        text = str(seen)
        if "No space left on device" in text or "StorageFull" in text or "file write failed" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _disk_full_message(reporter: JobReporter) -> str:
    store = get_store()
    where = _existing(store.local_root)
    free_mb = shutil.disk_usage(where).free / 2**20
    checkpoint = reporter.latest_checkpoint()
    kept = (
        f"the previous checkpoint (step {checkpoint.step}) is intact"
        if checkpoint
        else "no checkpoint had been saved yet"
    )
    return (
        f"No space left on device while writing to {where} ({free_mb:.1f} MiB free after "
        f"discarding the partial files); {kept}. Free some space (or lower save_total_limit) and "
        "start the job again"
    )


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (an S3 store's cache folder may not exist yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


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
    spec = resolve_checkpointing(spec, base.path, reporter)
    pause("validate_delay")
    train_rows, validation_rows = load_job_rows(store, job)
    reporter.event(f"{len(train_rows)} training rows, {len(validation_rows)} validation rows")
    if not validation_rows:
        reporter.event("No validation rows: overfitting will not be visible", level="warning")
    if reporter.cancel_requested():
        return _cancelled(reporter, "after validating the training data, before loading the model")
    resume_from = _resume_point(reporter, store, job.attempt)
    reporter.set_status(JobStatus.running)
    adapter_key = f"jobs/{job_id}/adapter"
    try:
        with store.new_folder(adapter_key) as adapter_dir:
            if spec.num_processes > 1:  # ranks in their own processes; this one keeps the lease
                outcome = train_distributed(
                    num_processes=spec.num_processes,
                    adapter_dir=adapter_dir,
                    reporter=reporter,
                    resume_from=resume_from,
                )
            else:
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
                    resume_from=resume_from,
                )
            if outcome.cancelled or outcome.diverged:
                raise _Stopped(outcome)
    except _Stopped as stop:
        if reporter.fenced:
            raise FencedOff(job_id) from None
        if stop.outcome.diverged:
            alert = stop.outcome.diverged
            remedies = "; ".join(alert.remedies)
            return _fail(reporter, "loss_diverged", f"{alert.message}. Try, in order: {remedies}")
        return _cancelled(reporter, f"at step {stop.outcome.global_step}")
    finally:
        store.delete(f"jobs/{job_id}/staging")
    reporter.event(  # written with the status change (set_status flushes the buffer first)
        f"Job succeeded after {outcome.global_step} steps; adapter saved",
        data={"adapter": adapter_key},
    )
    reporter.set_status(
        JobStatus.succeeded,
        finished_at=utcnow(),
        adapter_key=adapter_key,
        fine_tuned_model=f"{job.model}:{job_id}",
    )
    return JobStatus.succeeded.value


def _resume_point(reporter: JobReporter, store: ArtifactStore, attempt: int) -> Path | None:
    """A later attempt continues from the newest complete checkpoint; the curve loses later steps."""
    if attempt <= 1:
        return None
    checkpoint = reporter.latest_checkpoint()
    folder = _checkpoint_folder(store, checkpoint.artifact_key) if checkpoint else None
    if checkpoint is None or folder is None or not (folder / "trainer_state.json").exists():
        reporter.drop_points_after(0)
        reporter.event(f"Attempt {attempt}: no complete checkpoint yet, starting from the beginning")
        return None
    reporter.drop_points_after(checkpoint.step)
    reporter.event(f"Attempt {attempt}: resuming from the checkpoint at step {checkpoint.step}")
    return folder


def _checkpoint_folder(store: ArtifactStore, key: str) -> Path | None:
    """A local copy of a checkpoint to resume from (fetched from a remote store), or None."""
    try:
        return store.local_path(key)
    except FileNotFoundError:
        return None


def _retry(reporter: JobReporter, code: str, message: str, detail: str | None = None) -> str:
    """Hand the job back for another attempt after a backoff, or fail it after the last one."""
    reporter.event(message, level="error", data={"traceback": detail[-4000:]} if detail else None)
    reporter.flush()
    with session_scope() as session:
        job = session.get(Job, reporter.job_id)
        assert job is not None
        if job.attempt != reporter.fence:
            raise FencedOff(reporter.job_id)
        status = retry_or_fail(session, job, reason=message, code=code)
        if status is None:
            raise FencedOff(reporter.job_id)
        return status.value


class _Stopped(Exception):
    """Raised inside the adapter folder's scope so that its temporary folder is discarded."""

    def __init__(self, outcome: TrainOutcome) -> None:
        self.outcome = outcome


def _cancelled(reporter: JobReporter, when: str) -> str:
    if reporter.fenced:  # it stopped because the job moved on without it: not a cancel
        raise FencedOff(reporter.job_id)
    reporter.event(f"Job cancelled {when}")
    reporter.set_status(JobStatus.cancelled, finished_at=utcnow())
    return JobStatus.cancelled.value


def _fail(reporter: JobReporter, code: str, message: str, detail: str | None = None) -> str:
    reporter.event(message, level="error", data={"traceback": detail[-4000:]} if detail else None)
    reporter.set_status(
        JobStatus.failed,
        finished_at=utcnow(),
        error={"code": code, "message": message, "param": None},
    )
    return JobStatus.failed.value
