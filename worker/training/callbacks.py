"""A Trainer callback that reports to the database, watches training health, keeps checkpoints
atomic and pruned, stops early when asked, and honours cancellation at the next step."""

import math
import resource
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from app.core import metric_names
from app.core.faults import fault, pause
from app.core.spec import TrainingSpec
from app.core.storage import ArtifactStore
from worker.training.monitor import Alert, TrainingMonitor
from worker.training.reporting import JobCancelled, JobReporter

LOG_KEYS = {
    "loss": metric_names.TRAIN_LOSS,
    "learning_rate": metric_names.LEARNING_RATE,
    "grad_norm": metric_names.GRAD_NORM,
    "num_tokens": metric_names.TOKENS_SEEN,
    "eval_loss": metric_names.VALID_LOSS,
}


class ReportingCallback(TrainerCallback):
    """Metrics, events, health alerts and checkpoints of one job, written as training goes."""

    def __init__(self, reporter: JobReporter, store: ArtifactStore, spec: TrainingSpec) -> None:
        self.reporter = reporter
        self.store = store
        self.spec = spec
        self.cancelled = False
        self.fatal: Alert | None = None
        self.monitor = TrainingMonitor()
        self.best: tuple[float, int] | None = None  # (validation loss, step)
        self.evals_since_best = 0
        self._last_log = (0, time.monotonic())
        self.oom_at_step = fault("oom_at_step")
        self._evaluating_at: int | None = None
        self._last_tokens: float | None = None
        self.resumed_tokens: float | None = None  # a resumed trl run's token count (logstate.py)
        self.samples: list[dict[str, Any]] = []  # validation prompts answered at each evaluation

    @property
    def checkpoints_key(self) -> str:
        return f"jobs/{self.reporter.job_id}/checkpoints"

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._last_log = (state.global_step, time.monotonic())
        # tokens/s at the first log measures from here: 0 on a fresh run, the checkpoint's count on a
        # resumed one (the Trainer's own count, or trl's as ResumableLogMixin restored it)
        resumed = float(state.num_input_tokens_seen or 0) or self.resumed_tokens
        self._last_tokens = 0.0 if state.global_step == 0 else resumed
        self.reporter.step(state.global_step, state.max_steps, state.epoch)
        self.reporter.event(
            f"Training started: {state.max_steps} steps over {args.num_train_epochs:g} epoch(s)"
        )

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.oom_at_step is not None and state.global_step == self.oom_at_step:
            raise torch.OutOfMemoryError(
                f"simulated out of memory at step {state.global_step} (fault injection)"
            )
        pause("step_delay")
        if self.reporter.step(state.global_step, state.max_steps, state.epoch):
            self.cancelled = True
            self._stop(control)

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        # The Trainer has no way to stop an evaluation loop: cancelling raises out of it.
        if self._evaluating_at != state.global_step:
            self._evaluating_at = state.global_step
            self.reporter.event(f"Evaluating on the validation split at step {state.global_step}")
        pause("eval_batch_delay")
        if self.reporter.fenced or self.reporter.cancel_requested():
            raise JobCancelled(f"during evaluation at step {state.global_step}")

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.cancelled or self.fatal:  # don't spend time evaluating or saving a stopped job
            control.should_save = control.should_evaluate = False
            return
        epoch = round(state.epoch or 0)
        self.reporter.event(f"Epoch {epoch} of {args.num_train_epochs:g} finished (step {state.global_step})")

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
        if "loss" in logs:
            self._alerts(self.monitor.train_loss(state.global_step, float(logs["loss"])), control)
        values = {
            name: float(logs[key]) for key, name in LOG_KEYS.items() if key in logs and _finite(logs[key])
        }
        if metric_names.TRAIN_LOSS in values:
            last_step, last_time = self._last_log
            now = time.monotonic()
            if state.global_step > last_step:
                values[metric_names.STEP_TIME] = (now - last_time) / (state.global_step - last_step)
                tokens = values.get(metric_names.TOKENS_SEEN)
                if tokens is not None and self._last_tokens is not None and now > last_time:
                    values[metric_names.TOKENS_PER_SECOND] = (tokens - self._last_tokens) / (now - last_time)
            self._last_log = (state.global_step, now)
            self._last_tokens = values.get(metric_names.TOKENS_SEEN, self._last_tokens)
            values[metric_names.MEMORY_GIB] = _peak_memory_gib()
        if state.epoch is not None:
            values[metric_names.EPOCH] = float(state.epoch)
        self.reporter.metrics(state.global_step, state.epoch, values)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return
        self._samples(state, kw)
        self._alerts(self.monitor.valid_loss(state.global_step, float(loss)), control)
        if self.best is None or loss < self.best[0]:
            self.best, self.evals_since_best = (float(loss), state.global_step), 0
            return
        self.evals_since_best += 1
        patience = self.spec.early_stopping_patience
        if patience and self.evals_since_best >= patience:
            self.reporter.event(
                f"Early stopping: validation loss has not improved for {patience} evaluation(s); "
                f"best {self.best[0]:.4g} at step {self.best[1]}"
            )
            control.should_training_stop = True

    def _samples(self, state: TrainerState, kw: dict[str, Any]) -> None:
        """A few validation prompts answered by the adapter as it is now (rank 0 only)."""
        from worker.training import ddp, samples

        model, tokenizer = kw.get("model"), kw.get("processing_class")
        if not self.samples or model is None or tokenizer is None or not ddp.is_main_process():
            return
        try:
            answers = samples.answer(model, tokenizer, self.samples)
        except Exception as exc:  # a sample is a view of training, never a reason to stop it
            self.reporter.event(
                f"Sample generations at step {state.global_step} failed: {exc}", level="warning"
            )
            return
        self.reporter.event(
            f"Sample generations at step {state.global_step}: {len(answers)} validation prompts",
            data={"kind": "samples", "step": state.global_step, "samples": answers},
        )

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        # The Trainer wrote into a staging folder; the store publishes the complete checkpoint
        # (one rename on a local store; an upload whose marker goes last on S3).
        pause("save_delay")
        staged = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        key = f"{self.checkpoints_key}/step-{state.global_step}"
        self.store.publish_folder(staged, key)
        self.reporter.checkpoint(step=state.global_step, epoch=state.epoch, artifact_key=key)
        for removed in self.reporter.prune_checkpoints(keep_last=self.spec.save_total_limit):
            self.store.delete(removed)

    def _alerts(self, alerts: list[Alert], control: TrainerControl) -> None:
        for alert in alerts:
            self.reporter.alert(alert)
            if alert.fatal:
                self.fatal = alert
                self._stop(control)

    @staticmethod
    def _stop(control: TrainerControl) -> None:
        control.should_training_stop = True
        control.should_save = control.should_evaluate = False


def _peak_memory_gib() -> float:
    """Peak device memory on CUDA; on the CPU, the process's peak resident memory."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
