"""What the SEQ_CLS and SEQ_2_SEQ_LM trainers share: the base wrapped in LoRA, TrainingArguments
from the spec, and a reporting callback that knows transformers' Trainer logs.

The CAUSAL_LM path (trl's SFTTrainer) lives in ``pipeline.py``; these use transformers' Trainer.
"""

from pathlib import Path
from typing import Any

from peft import PeftModel, get_peft_model
from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

from app.core import metric_names
from app.core.spec import TrainingSpec
from worker.training import ddp
from worker.training.batching import LengthBucketMixin
from worker.training.callbacks import ReportingCallback
from worker.training.logstate import ResumableLogMixin
from worker.training.pipeline import Device, load_model, lora_config, training_kwargs


def load_peft_model(
    auto_class: Any,
    model_path: str,
    spec: TrainingSpec,
    device: Device,
    *,
    trust_remote_code: bool,
    **kw: Any,
) -> PeftModel:
    """The base loaded with ``auto_class`` (quantized when asked), wrapped in the spec's LoRA."""
    model = load_model(model_path, spec, device, trust_remote_code, auto_class=auto_class, **kw)
    return get_peft_model(model, lora_config(spec, num_layers=model.config.num_hidden_layers))


def training_arguments(
    spec: TrainingSpec, *, output_dir: Path, device: Device, seed: int, has_eval: bool
) -> TrainingArguments:
    """The spec as TrainingArguments, with the same cadence and checkpoint rules as SFT jobs."""
    return TrainingArguments(
        **training_kwargs(spec, output_dir=output_dir, device=device, seed=seed, has_eval=has_eval),
        label_names=["labels"],
        include_num_input_tokens_seen="non_padding",
    )


class TaskReportingCallback(ReportingCallback):
    """ReportingCallback plus the Trainer's token count and, for classifiers, validation accuracy."""

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        logs = dict(logs or {})
        if "num_input_tokens_seen" in logs:  # trl calls it num_tokens; the parent maps that name
            logs.setdefault("num_tokens", logs.pop("num_input_tokens_seen"))
        if "train_loss" not in logs:  # counting tokens adds running speed to every log, not only the last
            logs.pop("train_runtime", None)
        super().on_log(args, state, control, logs=logs, **kw)
        if "eval_accuracy" in logs:
            values = {metric_names.VALID_ACCURACY: float(logs["eval_accuracy"])}
            self.reporter.metrics(state.global_step, state.epoch, values)


class BucketedTrainer(ResumableLogMixin, ddp.RankZeroRngMixin, LengthBucketMixin, Trainer):
    """transformers' Trainer with length-bucketed batches, rank 0 writing every rank's RNG state,
    and the logging state kept across a resume."""
