"""LoRA SFT with transformers + peft + trl: the only place that builds LoraConfig / SFTConfig."""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoftQConfig, LoraConfig, prepare_model_for_kbit_training
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedTokenizerBase,
    set_seed,
)
from transformers.utils import is_flash_attn_2_available
from trl import SFTConfig, SFTTrainer

from app.core.faults import pause
from app.core.memory import activation_bytes
from app.core.spec import TrainingSpec
from app.core.storage import ArtifactStore
from worker.training import ddp, samples
from worker.training.batching import LengthBucketMixin
from worker.training.callbacks import ReportingCallback
from worker.training.data import to_prompt_completion
from worker.training.logstate import ResumableLogMixin
from worker.training.monitor import Alert
from worker.training.reporting import JobCancelled, JobReporter


class ModelLoadError(RuntimeError):
    """The base model could not be loaded."""


@dataclass(frozen=True)
class Device:
    """Where training runs and in which precision."""

    cuda: bool
    dtype: torch.dtype

    @property
    def varlen_attention(self) -> bool:
        """A variable-length attention kernel (FlashAttention 2) makes padding-free batches exact."""
        return self.cuda and is_flash_attn_2_available()

    @property
    def name(self) -> str:
        return torch.cuda.get_device_name(0) if self.cuda else "cpu"


def pick_device(precision: str) -> Device:
    """auto: bf16 where the GPU supports it, else fp16 on GPU; fp32 on CPU."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return Device(False, torch.float32)
        return Device(True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return Device(cuda, {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision])


def resolve_checkpointing(
    spec: TrainingSpec, model_path: str, reporter: JobReporter | None = None
) -> TrainingSpec:
    """``gradient_checkpointing: auto`` made on or off for this machine: on only when the step's
    activations without it (the advisor's formula, app/core/memory.py) would not fit in 80% of the
    device's free memory beside the weights. Recomputing every activation costs about a third of a
    step, so a job that fits trains that much faster."""
    if spec.gradient_checkpointing != "auto":
        return spec
    config = AutoConfig.from_pretrained(model_path)
    text = getattr(config, "text_config", None) or config
    tokens = spec.batch_size * spec.max_seq_length
    need = activation_bytes(
        tokens=tokens,
        hidden_size=int(getattr(text, "hidden_size", 0) or getattr(text, "d_model", 0) or 1024),
        num_layers=int(getattr(text, "num_hidden_layers", 0) or getattr(text, "num_layers", 0) or 1),
        vocab_size=int(getattr(text, "vocab_size", 0) or 32000),
        checkpointing=False,
    )
    weights = sum(f.stat().st_size for f in Path(model_path).glob("*.safetensors"))
    if spec.quantization == "4bit":
        weights //= 3
    elif spec.quantization == "8bit":
        weights //= 2
    if torch.cuda.is_available():
        free, where = torch.cuda.mem_get_info()[0], "GPU"
    else:
        free, where = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "CPU"
    on = weights + need > 0.8 * free
    if reporter is not None:
        reporter.event(
            f"Gradient checkpointing {'on' if on else 'off'} (auto): without it a step's activations take "
            f"about {need / 2**30:.2f} GiB beside {weights / 2**30:.2f} GiB of weights, with "
            f"{free / 2**30:.1f} GiB free on the {where}"
        )
    return spec.model_copy(update={"gradient_checkpointing": on})


def load_tokenizer(model_path: str, reporter: JobReporter | None = None) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        if reporter:
            reporter.event(
                f"The tokenizer had no pad token; padding with eos {tokenizer.eos_token!r}",
                level="warning",
            )
    return tokenizer


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def quantization_config(spec: TrainingSpec, device: Device) -> BitsAndBytesConfig | None:
    """bitsandbytes settings for the spec's quantization (None: full precision)."""
    if spec.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=spec.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=spec.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=DTYPES.get(spec.bnb_4bit_compute_dtype, device.dtype),
        )
    if spec.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_model(
    model_path: str,
    spec: TrainingSpec,
    device: Device,
    trust_remote_code: bool = False,
    *,
    auto_class: Any = AutoModelForCausalLM,
    **model_kwargs: Any,
) -> Any:
    """The frozen base loaded with ``auto_class``, quantized with bitsandbytes when the spec asks."""
    quantization = quantization_config(spec, device)
    pause("load_delay")
    try:
        model = auto_class.from_pretrained(
            model_path,
            dtype=device.dtype,
            quantization_config=quantization,
            device_map={"": ddp.local_rank()} if device.cuda else None,  # one GPU per process
            attn_implementation="flash_attention_2" if device.varlen_attention else "sdpa",
            trust_remote_code=trust_remote_code,
            # Pickle weights load only for a model an admin trusts; any other folder must have
            # safetensors (a stray .bin is never read).
            use_safetensors=None if trust_remote_code else True,
            **model_kwargs,
        )
    except (torch.OutOfMemoryError, MemoryError):
        raise
    except Exception as exc:  # corrupt weights, wrong config, missing files: all "cannot load"
        raise ModelLoadError(f"could not load base model from {model_path}: {exc}") from exc
    if quantization is not None:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=spec.gradient_checkpointing is True,  # "auto": resolved first
        )
    model.config.use_cache = False
    return model


def lora_config(spec: TrainingSpec, *, num_layers: int) -> LoraConfig:
    """peft's LoraConfig for the spec (num_layers resolves 'last N' layers)."""
    init: bool | str = True if spec.init_lora_weights == "default" else spec.init_lora_weights
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=spec.resolved_target_modules(),
        bias=spec.bias,
        task_type=spec.task_type,
        modules_to_save=spec.modules_to_save,
        layers_to_transform=spec.resolved_layers(num_layers),
        use_rslora=spec.use_rslora,
        use_dora=spec.use_dora,
        init_lora_weights=init,  # type: ignore[arg-type]
        loftq_config=LoftQConfig(loftq_bits=4) if spec.init_lora_weights == "loftq" else {},
    )


def training_kwargs(
    spec: TrainingSpec, *, output_dir: Path, device: Device, seed: int, has_eval: bool
) -> dict[str, Any]:
    """The spec's Trainer arguments every task type shares (cadence, checkpoints, precision)."""
    eval_strategy = ("steps" if spec.eval_steps else "epoch") if has_eval else "no"
    save_strategy, save_steps = ("steps", spec.save_steps) if spec.save_steps else ("epoch", None)
    if spec.early_stopping_patience and has_eval:  # the best evaluation must have a checkpoint
        save_strategy, save_steps = eval_strategy, spec.eval_steps
    return {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": spec.batch_size,
        "per_device_eval_batch_size": spec.batch_size,
        "gradient_accumulation_steps": spec.gradient_accumulation_steps,
        "learning_rate": spec.learning_rate,
        "weight_decay": spec.weight_decay,
        "num_train_epochs": spec.n_epochs,
        "max_steps": spec.max_steps or -1,
        "warmup_steps": spec.warmup_ratio,  # a float below 1 is a ratio of all steps
        "lr_scheduler_type": spec.lr_scheduler_type,
        "train_sampling_strategy": "group_by_length",  # for plain Trainers; ours bucket by length
        "logging_steps": spec.logging_steps,
        "logging_first_step": True,
        "eval_strategy": eval_strategy,
        "eval_steps": spec.eval_steps,
        "save_strategy": save_strategy,
        "save_steps": save_steps,
        "save_only_model": False,  # optimizer, scheduler and RNG state too: a later attempt resumes
        "activation_checkpointing": spec.gradient_checkpointing is True,  # "auto": resolve_checkpointing
        "activation_checkpointing_kwargs": {"use_reentrant": False},
        "bf16": device.dtype == torch.bfloat16,
        "fp16": device.dtype == torch.float16,
        "use_cpu": not device.cuda,
        "seed": seed,
        "data_seed": seed,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        **ddp.trainer_kwargs(device.cuda),
    }


def sft_config(
    spec: TrainingSpec, *, output_dir: Path, device: Device, seed: int, has_eval: bool
) -> SFTConfig:
    """trl's SFTConfig: length-grouped batches (never padded to max_length), loss on completions."""
    return SFTConfig(
        **training_kwargs(spec, output_dir=output_dir, device=device, seed=seed, has_eval=has_eval),
        max_length=spec.max_seq_length,
        completion_only_loss=True,
    )


class TunedeckSFTTrainer(ResumableLogMixin, ddp.RankZeroRngMixin, LengthBucketMixin, SFTTrainer):
    """trl's SFTTrainer with length-bucketed batches, rank 0 writing every rank's RNG state, and
    the logging state kept across a resume.

    ``padding_free``: each batch one flat sequence (position ids restart per row), no pad token at
    all. Exact with FlashAttention 2's variable-length kernel, and on SDPA too while no KV cache
    is used (training): transformers then builds a block-diagonal mask from the position ids
    (tests/worker/training/test_padding_free.py: the loss equals the padded batch's). trl 1.16
    refuses ``padding_free`` beside ``max_length`` (it would not truncate), so rows are tokenized
    and truncated as usual and the batches are flattened by the collator set here."""

    def __init__(self, *args: Any, padding_free: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if padding_free:
            from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

            self.data_collator = DataCollatorForLanguageModeling(
                pad_token_id=self.processing_class.pad_token_id, padding_free=True
            )
            self.padding_free = True


@dataclass(frozen=True)
class TrainOutcome:
    """How training ended: cancelled, diverged (a fatal health alert), or completed."""

    global_step: int
    cancelled: bool = False
    diverged: Alert | None = None


def start_training(
    spec: TrainingSpec,
    *,
    model_path: str,
    store: ArtifactStore,
    reporter: JobReporter,
    seed: int,
    what: str,
) -> tuple[Device, PreTrainedTokenizerBase, Path]:
    """What every task type does first: seed, pick the device, say what loads, load the tokenizer.

    Returns the device, the tokenizer and the staging folder the Trainer writes checkpoints into.
    """
    set_seed(seed)
    device = pick_device(spec.precision)
    reporter.event(
        f"Loading {what} on {device.name} ({str(device.dtype).removeprefix('torch.')}, "
        f"quantization {spec.quantization})"
    )
    tokenizer = load_tokenizer(model_path, reporter)
    return device, tokenizer, store.staging_dir(f"jobs/{reporter.job_id}/staging")


def train_adapter(
    *,
    spec: TrainingSpec,
    model_path: str,
    train_rows: list[dict[str, Any]],
    validation_rows: list[dict[str, Any]],
    adapter_dir: Path,
    store: ArtifactStore,
    reporter: JobReporter,
    seed: int,
    trust_remote_code: bool = False,
    resume_from: Path | None = None,
) -> TrainOutcome:
    """Train a LoRA adapter and save it into ``adapter_dir`` (unless stopped)."""
    device, tokenizer, staging = start_training(
        spec, model_path=model_path, store=store, reporter=reporter, seed=seed, what="base model"
    )
    model = load_model(model_path, spec, device, trust_remote_code)
    callback = ReportingCallback(reporter, store, spec)
    validation = [to_prompt_completion(r) for r in validation_rows]
    callback.samples = samples.pick(validation)
    trainer = TunedeckSFTTrainer(
        model=model,
        args=sft_config(spec, output_dir=staging, device=device, seed=seed, has_eval=bool(validation_rows)),
        train_dataset=Dataset.from_list([to_prompt_completion(r) for r in train_rows]),
        eval_dataset=Dataset.from_list(validation) if validation_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(spec, num_layers=model.config.num_hidden_layers),
        callbacks=[callback],
        padding_free=device.varlen_attention,
    )
    return train_and_save(
        trainer,
        callback,
        spec=spec,
        reporter=reporter,
        store=store,
        adapter_dir=adapter_dir,
        resume_from=resume_from,
    )


def train_and_save(
    trainer: Any,
    callback: ReportingCallback,
    *,
    spec: TrainingSpec,
    reporter: JobReporter,
    store: ArtifactStore,
    adapter_dir: Path,
    resume_from: Path | None = None,
) -> TrainOutcome:
    """Report the trainable share, train (from a checkpoint when resuming), and save the adapter.

    In a data-parallel job every rank runs this; only rank 0 reports and saves (``ddp``).
    """
    ddp.attach(trainer, callback)
    trainable, total = trainer.model.get_nb_trainable_parameters()
    reporter.event(
        f"trainable params: {trainable:,} || all params: {total:,} || "
        f"trainable%: {100 * trainable / total:.4f}",
        data={"trainable_params": trainable, "total_params": total},
    )
    if ddp.world_size() > 1:
        _report_processes(trainer, reporter)
    if reporter.cancel_requested():
        raise JobCancelled("while the model was loading, before the first step")
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    step = trainer.state.global_step
    if not ddp.is_main_process():  # rank 0 holds the same weights and saves them
        return TrainOutcome(global_step=step)
    if callback.cancelled or callback.fatal:
        return TrainOutcome(global_step=step, cancelled=callback.cancelled, diverged=callback.fatal)
    best = reporter.best_checkpoint() if spec.early_stopping_patience else None
    if best is not None:
        for item in store.local_path(best.artifact_key).iterdir():
            if item.name.startswith("adapter_"):
                shutil.copy(item, adapter_dir / item.name)
        reporter.event(
            f"Kept the best checkpoint as the adapter: step {best.step}, "
            f"validation loss {best.valid_loss:.4g}"
        )
    else:
        trainer.model.save_pretrained(str(adapter_dir))
    return TrainOutcome(global_step=step)


def _report_processes(trainer: Any, reporter: JobReporter) -> None:
    """Say how many processes train, over which backend (read from the live process group)."""
    args = trainer.args
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "not initialised"
    per_update = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    reporter.event(
        f"Training on {args.world_size} processes ({backend}): "
        f"{args.per_device_train_batch_size} rows per process per step, {per_update} rows per update",
        data={"processes": args.world_size, "backend": backend},
    )
