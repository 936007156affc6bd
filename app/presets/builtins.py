"""The built-in presets: read-only, defined here, each a partial spec over the seed's defaults."""

from dataclasses import dataclass, field
from typing import Any

from app.core.spec import TrainingSpec


@dataclass(frozen=True)
class BuiltinPreset:
    """A preset shipped with tunedeck; its id is its name."""

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.name

    def spec(self) -> TrainingSpec:
        """The full training spec: the seed's defaults with this preset's values applied."""
        return TrainingSpec.model_validate(self.overrides)


BUILTIN_PRESETS: tuple[BuiltinPreset, ...] = (
    BuiltinPreset("seed-defaults", "The seed recipe as it is: r=8, alpha=8, adapters on attention."),
    BuiltinPreset(
        "small-task",
        "Narrow tasks and small datasets: r=4, alpha=4 (alpha/r = 1).",
        {"r": 4, "lora_alpha": 4},
    ),
    BuiltinPreset(
        "large-task",
        "Broad tasks and large datasets: r=32, alpha=64, adapters on attention and MLP.",
        {"r": 32, "lora_alpha": 64, "target_modules": "attention+mlp"},
    ),
    BuiltinPreset(
        "low-memory",
        "QLoRA for small GPUs: 4-bit NF4 base, 512 tokens, last 8 layers, batch 4 × 8.",
        {
            "quantization": "4bit",
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": True,
            "max_seq_length": 512,
            "layers_to_transform": "last 8",
            "gradient_checkpointing": True,
            "batch_size": 4,
            "gradient_accumulation_steps": 8,
        },
    ),
)
BUILTINS_BY_ID = {preset.id: preset for preset in BUILTIN_PRESETS}
