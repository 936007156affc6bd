"""The one training spec: every LoRA and training parameter, its seed default, range and help.

The REST schema, the HTML form, the advisor and the worker all read this model; only
``worker/training`` turns it into peft's ``LoraConfig`` and trl's ``SFTConfig``.
"""

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TARGET_MODULE_PRESETS: dict[str, list[str] | str] = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "attention+mlp": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"],
    "all-linear": "all-linear",
}
MODULE_NAME = re.compile(r"^[A-Za-z0-9_.]+$")
LAST_N_LAYERS = re.compile(r"^last\s*:?\s*(\d+)$")


class TrainingSpec(BaseModel):
    """LoRA + training hyperparameters; defaults are the seed recipe's."""

    model_config = ConfigDict(extra="forbid")

    # LoRA
    r: int = Field(8, ge=1, le=256, description="LoRA rank: size of the low-rank update (4–64)")
    lora_alpha: int = Field(
        8, ge=1, le=1024, description="Scaling; alpha/r ≈ 1–2 (the update is scaled by alpha/r)"
    )
    lora_dropout: float = Field(
        0.05, ge=0.0, le=0.9, description="Dropout on the LoRA branch; raise it if overfitting"
    )
    target_modules: str | list[str] = Field(
        "attention",
        description="Layers that get adapters: 'attention' (q k v o), 'attention+mlp' "
        "(+ gate up), 'all-linear', or a comma-separated list of module names",
    )
    bias: Literal["none", "lora_only", "all"] = Field(
        "none", description="Which biases train: none (seed), only LoRA layers', or all"
    )
    task_type: Literal["CAUSAL_LM", "SEQ_CLS", "SEQ_2_SEQ_LM"] = Field(
        "CAUSAL_LM",
        description="CAUSAL_LM: instruction / chat fine-tuning of a decoder-only model; "
        "SEQ_CLS: text classification (text, label rows) with a new classifier head; "
        "SEQ_2_SEQ_LM: instruction rows on an encoder-decoder model (T5, BART)",
    )
    modules_to_save: list[str] | None = Field(
        None, description="Extra modules trained fully and saved with the adapter (e.g. lm_head)"
    )
    layers_to_transform: str | list[int] | None = Field(
        None, description="Only these layer indices get adapters: '20,21,22,23' or 'last 4' (empty: all)"
    )
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/√r (helps large r)")
    use_dora: bool = Field(False, description="DoRA: learn magnitude and direction (slower, can beat LoRA)")
    init_lora_weights: Literal["default", "gaussian", "pissa", "olora", "loftq"] = Field(
        "default",
        description="Adapter initialisation: default (B=0), gaussian, PiSSA, OLoRA, LoftQ (CUDA only)",
    )
    # Optimisation
    learning_rate: float = Field(
        1e-4, gt=0.0, le=1e-2, description="Peak learning rate; LoRA wants 5e-5…3e-4"
    )
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay")
    batch_size: int = Field(8, ge=1, le=1024, description="Examples per device per step")
    gradient_accumulation_steps: int = Field(
        4, ge=1, le=1024, description="Steps accumulated per update (effective batch = batch × this)"
    )
    n_epochs: int = Field(10, ge=1, le=1000, description="Passes over the training split")
    max_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="Stop after this many updates (overrides epochs)"
    )
    warmup_ratio: float = Field(
        0.05, ge=0.0, le=0.5, description="Share of updates spent warming the learning rate up"
    )
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after warm-up"
    )
    max_seq_length: int = Field(
        1024,
        ge=16,
        le=32768,
        description="Tokens per example after the chat template; longer rows are truncated",
    )
    # Cadence
    logging_steps: int = Field(10, ge=1, le=100_000, description="Record train metrics every N updates")
    eval_steps: int | None = Field(
        None, ge=1, le=100_000, description="Evaluate every N updates (empty: at each epoch end)"
    )
    save_steps: int | None = Field(
        None, ge=1, le=100_000, description="Checkpoint every N updates (empty: at each epoch end)"
    )
    save_total_limit: int = Field(
        3, ge=1, le=100, description="Keep the last K checkpoints (the best one is always kept too)"
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Stop after N evaluations without a better validation loss; keep the best",
    )
    # Memory and precision
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in the backward pass: less memory, ~30% slower; "
        "auto: only when the job would not fit the worker's memory without it",
    )
    quantization: Literal["none", "8bit", "4bit"] = Field(
        "none", description="Load the frozen base in 4-bit (QLoRA) or 8-bit via bitsandbytes"
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit data type: NF4 (seed) or FP4"
    )
    bnb_4bit_use_double_quant: bool = Field(
        True, description="Quantize the 4-bit scales too (saves ~0.4 bit per parameter)"
    )
    bnb_4bit_compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="dtype 4-bit layers compute in (auto: the training precision)"
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 where the device supports it, fp32 on CPU"
    )
    num_processes: int = Field(
        1,
        ge=1,
        le=16,
        description="Data-parallel training processes on one host (one per GPU; gloo on CPU): "
        "each takes batch_size rows per step, so the effective batch grows with them",
    )

    @field_validator("target_modules")
    @classmethod
    def _check_target_modules(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            if value in TARGET_MODULE_PRESETS:
                return value
            value = [part.strip() for part in value.split(",")]
        names = [name for name in value if name]
        if not names:
            raise ValueError("give at least one module name or a preset")
        bad = [name for name in names if not MODULE_NAME.match(name)]
        if bad:
            raise ValueError(f"module names may hold letters, digits, '_' and '.': {bad}")
        return names

    @field_validator("modules_to_save", mode="before")
    @classmethod
    def _split_modules_to_save(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()] or None
        if isinstance(value, list) and any(not MODULE_NAME.match(str(v)) for v in value):
            raise ValueError("module names may hold letters, digits, '_' and '.'")
        return value

    @field_validator("layers_to_transform", mode="before")
    @classmethod
    def _parse_layers(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip().lower()
            if not text:
                return None
            if match := LAST_N_LAYERS.match(text):
                if int(match.group(1)) < 1:
                    raise ValueError("'last N' needs N of at least 1")
                return f"last {int(match.group(1))}"
            try:
                value = [int(part) for part in text.split(",") if part.strip()]
            except ValueError:
                raise ValueError("give layer indices like '20,21,22,23' or 'last 4'") from None
        if isinstance(value, list) and any(not isinstance(i, int) or i < 0 for i in value):
            raise ValueError("layer indices are whole numbers from 0")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> "TrainingSpec":
        if self.init_lora_weights == "loftq" and self.quantization != "none":
            raise ValueError("LoftQ initialises from the full-precision base: set quantization to none")
        return self

    def resolved_target_modules(self) -> list[str] | str:
        """The module list (or 'all-linear') that peft receives."""
        if isinstance(self.target_modules, str):
            return TARGET_MODULE_PRESETS[self.target_modules]
        return self.target_modules

    def resolved_layers(self, num_layers: int) -> list[int] | None:
        """Layer indices for peft's layers_to_transform, given the model's depth."""
        if isinstance(self.layers_to_transform, str):
            n = int(self.layers_to_transform.split()[1])
            return list(range(max(0, num_layers - n), num_layers))
        return self.layers_to_transform

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps
