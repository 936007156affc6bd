"""A Trainer callback that reports to the database and honours cancellation at the next step."""

import math
import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from app import metric_names
from worker.training.reporting import JobReporter

LOG_KEYS = {
    "loss": metric_names.TRAIN_LOSS,
    "learning_rate": metric_names.LEARNING_RATE,
    "grad_norm": metric_names.GRAD_NORM,
    "num_tokens": metric_names.TOKENS_SEEN,
    "eval_loss": metric_names.VALID_LOSS,
}


class ReportingCallback(TrainerCallback):
    """Metrics and events to the database; a cancel flag stops training at the next step."""

    def __init__(self, reporter: JobReporter, checkpoint_key: str) -> None:
        self.reporter = reporter
        self.checkpoint_key = checkpoint_key
        self.cancelled = False
        self._last_log = (0, time.monotonic())

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._last_log = (state.global_step, time.monotonic())
        self.reporter.step(state.global_step, state.max_steps, state.epoch)
        self.reporter.event(
            f"Training started: {state.max_steps} steps over {args.num_train_epochs:g} epoch(s)"
        )

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.reporter.step(state.global_step, state.max_steps, state.epoch):
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = control.should_evaluate = False

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.cancelled:  # don't spend time evaluating or saving a cancelled job
            control.should_save = control.should_evaluate = False
            return
        self.reporter.event(
            f"Epoch {round(state.epoch or 0)} of {args.num_train_epochs:g} finished "
            f"(step {state.global_step})"
        )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        logs = logs or {}
        if "train_runtime" in logs:
            self.reporter.event(f"Training finished in {logs['train_runtime']:.1f}s")
            return
        values = {
            name: float(logs[key]) for key, name in LOG_KEYS.items() if key in logs and _finite(logs[key])
        }
        if metric_names.TRAIN_LOSS in values:
            last_step, last_time = self._last_log
            now = time.monotonic()
            if state.global_step > last_step:
                values[metric_names.STEP_TIME] = (now - last_time) / (state.global_step - last_step)
            self._last_log = (state.global_step, now)
        if state.epoch is not None:
            values[metric_names.EPOCH] = float(state.epoch)
        self.reporter.metrics(state.global_step, state.epoch, values)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        key = f"{self.checkpoint_key}/checkpoint-{state.global_step}"
        self.reporter.checkpoint(step=state.global_step, epoch=state.epoch, artifact_key=key)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
