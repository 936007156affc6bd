"""The one training spec: every LoRA and training parameter, its seed default, range and help.

The REST schema, the HTML form and the worker all read this model; only ``worker/training``
turns it into peft's ``LoraConfig`` and trl's ``SFTConfig``.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TARGET_MODULE_PRESETS: dict[str, list[str] | str] = {
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "attention+mlp": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"],
    "all-linear": "all-linear",
}


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
    # Optimisation
    learning_rate: float = Field(
        1e-4, gt=0.0, le=1e-2, description="Peak learning rate; LoRA wants 5e-5…3e-4"
    )
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay")
    batch_size: int = Field(8, ge=1, le=1024, description="Examples per device per step")
    gradient_accumulation_steps: int = Field(
        4,
        ge=1,
        le=1024,
        description="Steps accumulated per update (effective batch = batch × this)",
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
    # Memory and precision
    gradient_checkpointing: bool = Field(
        True, description="Recompute activations in the backward pass: less memory, ~30% slower"
    )
    quantization: Literal["none", "8bit", "4bit"] = Field(
        "none",
        description="Load the base in 4-bit NF4 (QLoRA, double quant) or 8-bit via bitsandbytes",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 where the device supports it, fp32 on CPU"
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
        bad = [name for name in names if not name.replace("_", "").replace(".", "").isalnum()]
        if bad:
            raise ValueError(f"module names may hold letters, digits, '_' and '.': {bad}")
        return names

    def resolved_target_modules(self) -> list[str] | str:
        """The module list (or 'all-linear') that peft receives."""
        if isinstance(self.target_modules, str):
            return TARGET_MODULE_PRESETS[self.target_modules]
        return self.target_modules

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps
