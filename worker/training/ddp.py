"""Inside each process of a data-parallel job: who may write, and how the processes stay in step.

A job with ``num_processes`` > 1 trains in N processes started by torchrun (see ``ddp_entry``).
Every process runs the same trainer code; this module is what differs between them:

- rank 0 reports through the real JobReporter and writes checkpoints and the adapter; the other
  ranks get a ``FollowerReporter`` that writes nothing, and lose the ReportingCallback;
- only rank 0 reads the database's answers that stop training (cancel, a fatal health alert,
  early stopping), so ``ControlSync`` hands its decisions to the others: a rank that stops or
  saves alone leaves the rest waiting forever in the next collective;
- the Trainer makes every rank write its RNG state into the checkpoint; ``RankZeroRngMixin``
  gathers those states so that rank 0 writes them all.

With one process (no torchrun) every function here is a no-op, and training is unchanged.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from worker.training.monitor import Alert
from worker.training.reporting import JobReporter

# The TrainerControl flags that decide what every rank does next; they must agree across ranks.
CONTROL_FLAGS = ("should_training_stop", "should_epoch_stop", "should_save", "should_evaluate", "should_log")


def world_size() -> int:
    """How many processes train this job (torchrun's WORLD_SIZE; 1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's GPU index on the host."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Rank 0: the one process that writes to the database and the artifact store."""
    return rank() == 0


def backend(cuda: bool) -> str:
    """nccl between GPUs; gloo between CPU processes."""
    return "nccl" if cuda else "gloo"


def trainer_kwargs(cuda: bool) -> dict[str, Any]:
    """TrainingArguments for a multi-process run: name the backend (accelerate would pick mpi on CPU
    where torch has it)."""
    return {"ddp_backend": backend(cuda)} if world_size() > 1 else {}


def attach(trainer: Any, callback: TrainerCallback) -> None:
    """Make a Trainer built with ``callback`` fit this rank: rank 0 keeps it, the others drop it,
    and all of them follow rank 0's control decisions."""
    if world_size() <= 1:
        return
    if not is_main_process():
        trainer.remove_callback(callback)
    trainer.add_callback(ControlSync())


def share_control(control: TrainerControl) -> None:
    """Overwrite this rank's control flags with rank 0's (a collective: every rank calls it)."""
    flags: list[Any] = [getattr(control, name) for name in CONTROL_FLAGS]
    dist.broadcast_object_list(flags, src=0)
    for name, value in zip(CONTROL_FLAGS, flags, strict=True):
        setattr(control, name, bool(value))


class ControlSync(TrainerCallback):
    """After each hook where the ReportingCallback may stop, skip a save or stop early, every rank
    adopts rank 0's flags. The Trainer calls these hooks on every rank at the same point, and this
    callback runs after the ReportingCallback, so the collective always lines up."""

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        share_control(control)

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        share_control(control)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        share_control(control)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        share_control(control)


class RankZeroRngMixin:
    """Checkpoints of a multi-process run hold ``rng_state_<rank>.pth`` for every rank (a resumed
    run replays each rank's dropout and sampling); the Trainer would have each rank write its own
    file into the artifact store. Here every rank serialises its state into a private temporary
    folder, rank 0 gathers the bytes and writes all the files."""

    args: Any

    def _save_rng_state(self, output_dir: str) -> None:
        if self.args.world_size <= 1:
            super()._save_rng_state(output_dir)  # type: ignore[misc]
            return
        name = f"rng_state_{self.args.process_index}.pth"
        with tempfile.TemporaryDirectory(prefix="tunedeck-rng-") as scratch:
            super()._save_rng_state(scratch)  # type: ignore[misc]
            state = (Path(scratch) / name).read_bytes()
        states: list[Any] = [None] * self.args.world_size
        dist.all_gather_object(states, state)
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            for index, data in enumerate(states):
                (Path(output_dir) / f"rng_state_{index}.pth").write_bytes(data)


class FollowerReporter(JobReporter):
    """The reporter of ranks other than 0: every report is dropped, and a database write raises.

    Only rank 0 decides to stop, so a follower never sees a cancel; the trainer code can call
    the same methods on every rank without asking which one it is.
    """

    def __enter__(self) -> "FollowerReporter":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def event(self, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        return None

    def step(self, step: int, total_steps: int, epoch: float | None) -> bool:
        return False

    def metrics(self, step: int, epoch: float | None, values: dict[str, float]) -> None:
        return None

    def alert(self, alert: Alert) -> None:
        return None

    def flush(self) -> None:
        return None

    def cancel_requested(self) -> bool:
        return False

    def _write(self, *, quick: bool = False) -> Any:
        raise RuntimeError(f"rank {rank()} tried to write job {self.job_id}: only rank 0 writes")
