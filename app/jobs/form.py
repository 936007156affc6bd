"""The new-job form, generated from the training spec so the two never drift apart."""

import typing
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Gt, Le
from pydantic import ValidationError

from app.core.spec import TARGET_MODULE_PRESETS, TrainingSpec

GROUPS = {
    "LoRA": (
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "bias",
        "task_type",
        "modules_to_save",
        "layers_to_transform",
        "init_lora_weights",
        "use_rslora",
        "use_dora",
    ),
    "Optimisation": (
        "learning_rate",
        "weight_decay",
        "batch_size",
        "gradient_accumulation_steps",
        "n_epochs",
        "max_steps",
        "warmup_ratio",
        "lr_scheduler_type",
        "max_seq_length",
    ),
    "Cadence and checkpoints": (
        "logging_steps",
        "eval_steps",
        "save_steps",
        "save_total_limit",
        "early_stopping_patience",
    ),
    "Memory and precision": (
        "gradient_checkpointing",
        "precision",
        "quantization",
        "bnb_4bit_quant_type",
        "bnb_4bit_use_double_quant",
        "bnb_4bit_compute_dtype",
        "num_processes",
    ),
}


@dataclass(frozen=True)
class FormField:
    """One input of the form, with what the template needs to draw it."""

    name: str
    kind: str  # number, select, checkbox, text
    value: Any
    help: str
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    step: str = "any"
    optional: bool = False


def form_fields(values: dict[str, Any] | None = None) -> dict[str, list[FormField]]:
    """Fields grouped for display, filled with ``values`` or the seed's defaults."""
    values = values or {}
    return {group: [_field(name, values) for name in names] for group, names in GROUPS.items()}


def _field(name: str, values: dict[str, Any]) -> FormField:
    info = TrainingSpec.model_fields[name]
    value = values.get(name, info.default)
    help_text = info.description or ""
    annotation = info.annotation
    args = typing.get_args(annotation)
    if annotation is bool:
        return FormField(name, "checkbox", bool(value), help_text)
    if bool in args:  # on, off or a word such as auto (pydantic reads "on" and "off" as booleans)
        words = tuple(w for a in args if typing.get_origin(a) is typing.Literal for w in typing.get_args(a))
        shown = {True: "on", False: "off", "true": "on", "false": "off"}.get(value, value)
        return FormField(name, "select", shown, help_text, choices=(*words, "on", "off"))
    literal = next((a for a in (annotation, *args) if typing.get_origin(a) is typing.Literal), None)
    if literal is not None:
        return FormField(name, "select", value, help_text, choices=typing.get_args(literal))
    if name == "target_modules":
        shown = value if isinstance(value, str) else ",".join(value)
        return FormField(name, "text", shown, help_text, choices=tuple(TARGET_MODULE_PRESETS))
    if any(typing.get_origin(a) is list for a in args):
        shown = ",".join(str(v) for v in value) if isinstance(value, list) else (value or "")
        return FormField(name, "text", shown, help_text, optional=True)
    low = _bound(info.metadata, Ge, "ge")
    low = _bound(info.metadata, Gt, "gt") if low is None else low
    high = _bound(info.metadata, Le, "le")
    is_int = int in (annotation, *args)
    return FormField(
        name,
        "number",
        "" if value is None else value,
        help_text,
        min=low,
        max=high,
        step="1" if is_int else "any",
        optional=type(None) in args,
    )


def _bound(metadata: list[Any], kind: type, attribute: str) -> float | None:
    """A numeric limit (ge / gt / le) from a field's annotated-types metadata."""
    for item in metadata:
        if isinstance(item, kind):
            return float(getattr(item, attribute))
    return None


def parse_spec_form(form: dict[str, list[str]]) -> TrainingSpec:
    """A TrainingSpec from submitted form fields; blank optional fields take their defaults."""
    raw: dict[str, Any] = {}
    for name, info in TrainingSpec.model_fields.items():
        submitted = form.get(name)
        if info.annotation is bool:
            raw[name] = bool(submitted) and submitted is not None and submitted[-1] in ("on", "true", "1")
        elif submitted and submitted[-1].strip() != "":
            raw[name] = submitted[-1].strip()
    return TrainingSpec.model_validate(raw)


def spec_errors(exc: ValidationError) -> dict[str, str]:
    """Field name → message, for showing next to each input."""
    return {str(err["loc"][0]) if err["loc"] else "form": err["msg"] for err in exc.errors()}
