"""Both ends of a data-parallel job: the worker that launches it and the processes that train.

The worker that claimed the job stays in charge: it keeps the lease alive (its Heartbeat), owns
the adapter folder and writes the job's final status, exactly as for a one-process job. For
training it runs ``torchrun --standalone --nproc-per-node N -m worker.training.ddp_entry …``
and waits. Each rank reads the job and its rows (reads only), trains with the job's trainer,
and leaves a small JSON result in a private run folder outside the artifact store. Rank 0
reports through its own JobReporter under the same fencing token, so an attempt that lost the
job is refused there as well; the parent turns the results back into the TrainOutcome or the
exception a one-process run would have produced, so the runner's handling stays the same.
"""

import argparse
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import torch

from app.core.db import read_session
from app.core.spec import TrainingSpec
from app.core.storage import get_store
from app.core.tables import BaseModelRecord, Job
from worker.training import ddp
from worker.training.data import TrainingDataError, load_job_rows
from worker.training.monitor import Alert
from worker.training.pipeline import ModelLoadError, TrainOutcome, resolve_checkpointing
from worker.training.reporting import FencedOff, JobCancelled, JobReporter

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the parent checks that its attempt still owns the job
STOP_GRACE_S = 30.0  # after SIGTERM, torchrun gets this long to stop its ranks before SIGKILL
LOG_TAIL_CHARS = 4000
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding worker/ and app/


class DistributedTrainingError(RuntimeError):
    """A rank failed with an error the runner has no special handling for (retried as internal)."""


class NotEnoughDevices(ValueError):
    """The job asks for more processes than the host has GPUs: no retry will fix that."""


# -- the parent: the worker process that claimed the job ------------------------------------


def train_distributed(
    *,
    num_processes: int,
    adapter_dir: Path,
    reporter: JobReporter,
    resume_from: Path | None = None,
) -> TrainOutcome:
    """Train the job in ``num_processes`` processes and return rank 0's outcome.

    Raises what a one-process run raises (FencedOff, JobCancelled, ModelLoadError, …) so that
    the runner fails, retries or cancels the job the same way.
    """
    check_devices(num_processes)
    run_dir = Path(tempfile.mkdtemp(prefix=f"tunedeck-ddp-{reporter.job_id}-"))
    try:
        command = launch_command(
            num_processes,
            job_id=reporter.job_id,
            fence=reporter.fence,
            adapter_dir=adapter_dir,
            run_dir=run_dir,
            resume_from=resume_from,
        )
        reporter.event(f"Launching {num_processes} training processes with torchrun")
        log.info("job %s: %s", reporter.job_id, " ".join(command))
        with open(run_dir / "torchrun.log", "wb") as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=launch_env(num_processes),  # and the worker's cwd: relative data paths agree
                start_new_session=True,  # one process group: stopping it stops every rank
            )
            try:
                _wait(process, reporter)
            finally:
                if process.poll() is None:
                    _stop(process)
        return conclude(run_dir, num_processes, process.returncode, reporter.job_id)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def check_devices(num_processes: int) -> None:
    """One GPU per process where there are GPUs; any number of processes on the CPU."""
    if torch.cuda.is_available() and num_processes > torch.cuda.device_count():
        raise NotEnoughDevices(
            f"num_processes is {num_processes} but this worker has {torch.cuda.device_count()} GPU(s): "
            "lower num_processes or run the job on a larger host"
        )


def launch_command(
    num_processes: int,
    *,
    job_id: str,
    fence: int,
    adapter_dir: Path,
    run_dir: Path,
    resume_from: Path | None,
) -> list[str]:
    """torchrun (as ``python -m torch.distributed.run``, so this interpreter) on one host."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a private rendezvous on a free local port: jobs side by side don't meet
        f"--nproc-per-node={num_processes}",
        "--max-restarts=0",  # a failed rank fails the attempt; the runner's retry resumes it
        "-m",
        "worker.training.ddp_entry",
        job_id,
        str(fence),
        "--adapter-dir",
        str(adapter_dir),
        "--run-dir",
        str(run_dir),
    ]
    if resume_from is not None:
        command += ["--resume-from", str(resume_from)]
    return command


def launch_env(num_processes: int) -> dict[str, str]:
    """The worker's environment (database, data dir, faults), with this package importable and the
    CPU threads shared between the ranks instead of each rank taking every core."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    return env


def _wait(process: subprocess.Popen[bytes], reporter: JobReporter) -> None:
    """Wait for torchrun; if this attempt loses the job meanwhile, stop the ranks and say so."""
    while True:
        try:
            process.wait(timeout=POLL_S)
            return
        except subprocess.TimeoutExpired:
            if reporter.fenced:
                _stop(process)
                raise FencedOff(reporter.job_id) from None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the launch's process group (torchrun and its ranks), SIGKILL what outlives the grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def conclude(run_dir: Path, num_processes: int, returncode: int | None, job_id: str) -> TrainOutcome:
    """Rank 0's outcome; else the most telling error a rank reported; else torchrun's log."""
    results = {
        rank: json.loads(path.read_text())
        for rank in range(num_processes)
        if (path := result_path(run_dir, rank)).exists()
    }
    main = results.get(0, {})
    if "outcome" in main:
        if main["fenced"]:
            raise FencedOff(job_id)
        return outcome_from(main["outcome"])
    errors = sorted(
        ((rank, record["error"]) for rank, record in results.items() if "error" in record),
        key=lambda item: (item[1]["kind"] == "error", item[0]),  # a known kind first, then rank 0 first
    )
    if errors:
        rank, error = errors[0]
        raise exception_from(error, rank=rank, num_processes=num_processes, job_id=job_id)
    tail = _tail(run_dir / "torchrun.log")
    raise DistributedTrainingError(
        f"torchrun exited with status {returncode} and no process reported a result: {tail}"
    )


def exception_from(error: dict[str, Any], *, rank: int, num_processes: int, job_id: str) -> Exception:
    """The exception a one-process run would have raised for a rank's error record."""
    kind, message = error["kind"], error["message"]
    known: dict[str, Exception] = {
        "fenced": FencedOff(job_id),
        "cancelled": JobCancelled(message),
        "data": TrainingDataError(message),
        "model_load": ModelLoadError(message),
        "oom": torch.OutOfMemoryError(message),
    }
    exc = known.get(kind) or DistributedTrainingError(
        f"rank {rank} of {num_processes}: {error['type']}: {message}"
    )
    exc.add_note(f"traceback in rank {rank}:\n{error['traceback']}")
    return exc


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-LOG_TAIL_CHARS:].strip() or "(no output)"


# -- what parent and ranks share: the result files ------------------------------------------


def result_path(run_dir: Path, rank: int) -> Path:
    return run_dir / f"rank-{rank}.json"


def outcome_record(outcome: TrainOutcome) -> dict[str, Any]:
    return dataclasses.asdict(outcome)


def outcome_from(record: dict[str, Any]) -> TrainOutcome:
    alert = record.get("diverged")
    diverged = Alert(**{**alert, "remedies": tuple(alert["remedies"])}) if alert else None
    return TrainOutcome(global_step=record["global_step"], cancelled=record["cancelled"], diverged=diverged)


def error_record(exc: BaseException, *, fenced: bool) -> dict[str, Any]:
    """What the parent needs to raise the matching exception: a kind, the message, the traceback."""
    kind = "error"
    message = str(exc)
    if fenced or isinstance(exc, FencedOff):
        kind = "fenced"
    elif isinstance(exc, JobCancelled):
        kind, message = "cancelled", exc.when
    elif isinstance(exc, TrainingDataError):
        kind = "data"
    elif isinstance(exc, ModelLoadError):
        kind = "model_load"
    elif isinstance(exc, torch.OutOfMemoryError | MemoryError):
        kind = "oom"
    return {
        "kind": kind,
        "type": type(exc).__name__,
        "message": message,
        "traceback": "".join(traceback.format_exception(exc))[-LOG_TAIL_CHARS:],
    }


# -- a rank: one of the processes torchrun starts -------------------------------------------


def train_rank(
    job_id: str, fence: int, adapter_dir: Path, run_dir: Path, resume_from: Path | None
) -> dict[str, Any]:
    """Train this rank's share of the job; return the record the parent reads.

    Rank 0 writes the adapter into ``adapter_dir``; the others get a scratch folder in the run
    folder, so that nothing they do lands in the artifact store.
    """
    from worker.training.registry import TRAINERS  # heavy: only the ranks need every trainer

    store = get_store()
    with read_session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        base = session.get(BaseModelRecord, job.model)
    if base is None:
        raise ModelLoadError(f"base model {job.model!r} is no longer registered")
    spec = resolve_checkpointing(
        TrainingSpec.model_validate(job.hyperparameters), base.path
    )  # each rank alike
    train_rows, validation_rows = load_job_rows(store, job)
    if ddp.is_main_process():
        reporter: JobReporter = JobReporter(job_id, fence)
    else:
        reporter = ddp.FollowerReporter(job_id, fence)
        adapter_dir = run_dir / f"rank-{ddp.rank()}-adapter"
        adapter_dir.mkdir()
    with reporter:
        try:
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
        except Exception as exc:
            log.exception("job %s: rank %s failed", job_id, ddp.rank())
            return {"error": error_record(exc, fenced=reporter.fenced)}
    return {"outcome": outcome_record(outcome), "fenced": reporter.fenced}


def main(argv: list[str] | None = None) -> int:
    """A rank's entry point: train, write the result file, and exit 0 (trained) or 1 (failed)."""
    parser = argparse.ArgumentParser(description="Train one rank of a data-parallel tunedeck job.")
    parser.add_argument("job_id")
    parser.add_argument("fence", type=int)
    parser.add_argument("--adapter-dir", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--resume-from", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"rank {ddp.rank()} %(levelname)s %(name)s: %(message)s")
    try:
        record = train_rank(args.job_id, args.fence, args.adapter_dir, args.run_dir, args.resume_from)
    except Exception as exc:  # reading the job or its rows failed: tell the parent why
        log.exception("job %s: rank %s failed", args.job_id, ddp.rank())
        record = {"error": error_record(exc, fenced=False)}
    result_path(args.run_dir, ddp.rank()).write_text(json.dumps(record))
    if "error" in record:
        return 1
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
