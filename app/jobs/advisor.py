"""The advisor before launch: the seed's pitfalls as checks, and estimates of size, memory, time.

Errors block a submission; warnings and notes don't. Torch-free: it reads the model from its
config and safetensors headers (app.basemodels.inspect).
"""

from dataclasses import dataclass, field
from statistics import fmean

from app.basemodels.inspect import LinearLayer, ModelInfo
from app.core.memory import activation_bytes
from app.core.spec import TrainingSpec
from app.datasets.service import TokenStats


@dataclass(frozen=True)
class Check:
    """One finding: level is error (blocks), warning or info; field names the spec parameter."""

    level: str
    code: str
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Estimates:
    """What the job will train and need, before it runs."""

    trainable_params: int
    total_params: int
    trainable_percent: float
    memory_bytes: dict[str, int] = field(default_factory=dict)
    steps: int | None = None
    tokens: int | None = None
    seconds: float | None = None
    seconds_basis: str = "no job on this model has finished yet, so the speed is unknown"


def targeted_layers(spec: TrainingSpec, info: ModelInfo) -> list[LinearLayer]:
    """The linear layers peft will put adapters on."""
    targets = spec.resolved_target_modules()
    if targets == "all-linear":
        chosen = [layer for layer in info.linear_layers if layer.name != "lm_head"]
    else:
        chosen = sorted(
            {layer for name in targets for layer in info.match(name)}, key=lambda layer: layer.path
        )
    layers = spec.resolved_layers(info.num_layers)
    return chosen if layers is None else [layer for layer in chosen if layer.layer_index in set(layers)]


def check_against_model(spec: TrainingSpec, info: ModelInfo, model_id: str) -> list[Check]:
    """Errors: names and indices the model does not have."""
    checks: list[Check] = []
    targets = spec.resolved_target_modules()
    if targets != "all-linear":
        missing = [name for name in targets if not info.match(name)]
        if missing:
            checks.append(
                Check(
                    "error",
                    "unknown_target_modules",
                    f"target_modules {missing} match no linear layer of {model_id}; "
                    f"its linear layers are: {', '.join(info.linear_names)}",
                    "target_modules",
                )
            )
    layers = spec.resolved_layers(info.num_layers)
    if layers is not None and any(i >= info.num_layers for i in layers):
        checks.append(
            Check(
                "error",
                "invalid_layers",
                f"layers_to_transform {layers} goes past the model's {info.num_layers} layers "
                f"(0–{info.num_layers - 1})",
                "layers_to_transform",
            )
        )
    for module in spec.modules_to_save or []:
        if not any(
            p == module or p.startswith(module + ".") or f".{module}." in f".{p}" for p in info.param_shapes
        ):
            checks.append(
                Check(
                    "error",
                    "unknown_modules_to_save",
                    f"modules_to_save: {model_id} has no module {module!r}",
                    "modules_to_save",
                )
            )
    if not checks and not targeted_layers(spec, info):
        checks.append(
            Check("error", "no_target_layers", "these settings put no adapter on any layer", "target_modules")
        )
    return checks


ENCODER_ONLY_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "modernbert")


def check_task(spec: TrainingSpec, info: ModelInfo, *, model_id: str, formats: dict[str, str]) -> list[Check]:
    """Errors when task_type does not fit the data (``formats``: file param → format) or the base."""
    task = spec.task_type
    checks = [Check("error", "task_data_mismatch", m, "task_type") for m in _data_mismatches(task, formats)]
    encoder_only = info.model_type in ENCODER_ONLY_TYPES or info.architecture.endswith("ForMaskedLM")
    kind = "encoder-only" if encoder_only else "decoder-only"
    message, level = None, "error"
    if task == "SEQ_2_SEQ_LM" and not info.is_encoder_decoder:
        message = (
            f"SEQ_2_SEQ_LM needs an encoder-decoder base (T5, BART); {model_id} is {kind} "
            f"({info.architecture}): pick such a base or set task_type to CAUSAL_LM"
        )
    elif task != "SEQ_2_SEQ_LM" and info.is_encoder_decoder:
        needs = "a decoder-only or encoder-only" if task == "SEQ_CLS" else "a decoder-only"
        message = (
            f"{task} needs {needs} base; {model_id} is encoder-decoder ({info.architecture}): "
            "pick another base, or set task_type to SEQ_2_SEQ_LM for instruction data"
        )
    elif task == "CAUSAL_LM" and encoder_only:
        message, level = (
            f"{model_id} is encoder-only ({info.architecture}): as a causal LM it generates poorly; "
            "pick a decoder-only base, or train it with task_type SEQ_CLS on classification data",
            "warning",
        )
    if message:
        checks.append(Check(level, "task_model_mismatch", message, "task_type"))
    return checks


def _data_mismatches(task: str, formats: dict[str, str]) -> list[str]:
    messages = []
    for param, data_format in formats.items():
        where = f"{param} is in {data_format} format"
        if data_format == "classification" and task != "SEQ_CLS":
            messages.append(f"{where} (text, label rows): set task_type to SEQ_CLS to train a classifier")
        elif task == "SEQ_CLS" and data_format != "classification":
            messages.append(
                f"{where}, but SEQ_CLS trains on classification rows (text, label): "
                "upload those, or pick the task_type that fits this data (CAUSAL_LM)"
            )
        elif task == "SEQ_2_SEQ_LM" and data_format != "instruction":
            messages.append(
                f"{where}, but SEQ_2_SEQ_LM trains on instruction rows (instruction, input, output): "
                "upload those, or set task_type to CAUSAL_LM"
            )
    return messages


def pitfalls(
    spec: TrainingSpec, *, info: ModelInfo, stats: TokenStats | None, train_rows: int, has_validation: bool
) -> list[Check]:
    """The seed recipe's pitfalls, each with what to change."""
    checks: list[Check] = []

    def warn(code: str, field: str | None, message: str, level: str = "warning") -> None:
        checks.append(Check(level, code, message, field))

    if spec.learning_rate <= 1e-5:
        warn(
            "learning_rate_too_low",
            "learning_rate",
            f"learning_rate {spec.learning_rate:g} is a full fine-tuning rate: the adapter will barely move; "
            "LoRA wants 5e-5…3e-4",
        )
    if spec.lora_alpha < spec.r:
        warn(
            "alpha_below_r",
            "lora_alpha",
            f"lora_alpha {spec.lora_alpha} is below r {spec.r}, which scales the update down "
            f"(alpha/r = {spec.lora_alpha / spec.r:.2g}); keep alpha/r between 1 and 2",
        )
    if spec.r > 64:
        warn(
            "r_too_large",
            "r",
            f"r = {spec.r} trains many more parameters for little gain; 8–32 covers most tasks",
        )
    if not has_validation:
        warn(
            "no_validation",
            "validation_file",
            "no validation split: overfitting will not be visible; upload with validation_split 0.1 "
            "(the seed's 9:1) or pick a validation file",
        )
    if spec.lora_dropout == 0 and train_rows < 10_000:
        warn(
            "no_dropout_small_data",
            "lora_dropout",
            f"lora_dropout is 0 on {train_rows:,} training rows: small datasets overfit; use 0.1–0.2",
        )
    if spec.init_lora_weights == "loftq":
        warn(
            "loftq_needs_cuda",
            "init_lora_weights",
            "LoftQ initialisation runs only on a CUDA worker (peft quantizes on the GPU); a CPU worker fails",
        )
    if not info.has_pad_token:
        warn(
            "pad_token_added",
            None,
            "the tokenizer has no pad token; tunedeck pads with eos automatically",
            "info",
        )
    if stats and stats.truncated:
        warn(
            "rows_truncated",
            "max_seq_length",
            f"{stats.truncated} of {stats.rows} rows are longer than max_seq_length {spec.max_seq_length} "
            f"(longest: {stats.max} tokens) and will be truncated; raise max_seq_length or clean them out",
        )
    if info.max_position_embeddings and spec.max_seq_length > info.max_position_embeddings:
        warn(
            "beyond_context",
            "max_seq_length",
            f"max_seq_length {spec.max_seq_length} exceeds the model's context of "
            f"{info.max_position_embeddings} tokens",
        )
    if train_rows and spec.effective_batch_size > train_rows:
        warn(
            "batch_larger_than_data",
            "batch_size",
            f"the effective batch ({spec.effective_batch_size}) is larger than the training split "
            f"({train_rows} rows): each epoch is one update",
        )
    return checks


def trainable_parameters(spec: TrainingSpec, info: ModelInfo) -> tuple[int, int]:
    """(trainable, all) parameters, as peft's print_trainable_parameters reports them."""
    layers = targeted_layers(spec, info)
    lora = sum(spec.r * (layer.in_features + layer.out_features) for layer in layers)
    if spec.use_dora:
        lora += sum(layer.out_features for layer in layers)
    paths = {layer.path for layer in layers}
    trainable = lora
    if spec.bias == "all":
        trainable += sum(_size(s) for p, s in info.param_shapes.items() if p.endswith(".bias"))
    elif spec.bias == "lora_only":
        trainable += sum(
            _size(s)
            for p, s in info.param_shapes.items()
            if p.removesuffix(".bias") in paths and p.endswith(".bias")
        )
    saved = sum(
        _size(s)
        for p, s in info.param_shapes.items()
        for m in spec.modules_to_save or []
        if p.startswith(m + ".") or f".{m}." in f".{p}"
    )
    return trainable + saved, info.n_params + lora + saved


def _size(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def memory_bytes(spec: TrainingSpec, info: ModelInfo, trainable: int, seq_len: int) -> dict[str, int]:
    """A rough peak-memory budget on a CUDA worker (bf16 unless fp32 is asked for)."""
    dtype_bytes = 4 if spec.precision == "fp32" else 2
    linear = sum(
        layer.in_features * layer.out_features for layer in info.linear_layers if layer.name != "lm_head"
    )
    rest = info.n_params - linear
    per_linear = {"4bit": (4.127 if spec.bnb_4bit_use_double_quant else 4.5) / 8, "8bit": 1.06}.get(
        spec.quantization, dtype_bytes
    )
    tokens = spec.batch_size * seq_len
    activations = activation_bytes(
        tokens=tokens,
        hidden_size=info.hidden_size,
        num_layers=info.num_layers,
        vocab_size=info.vocab_size,
        checkpointing=spec.gradient_checkpointing is True,  # auto: off unless the worker lacks room
    )
    budget = {
        "weights": int(linear * per_linear + rest * dtype_bytes),
        "adapter": trainable * 4,
        "gradients": trainable * 4,
        "optimizer": trainable * 8,
        "activations": int(activations),
    }
    budget["total"] = sum(budget.values())
    if spec.gradient_checkpointing == "auto":  # what the worker turns it on to fit
        checkpointed = activation_bytes(
            tokens=tokens,
            hidden_size=info.hidden_size,
            num_layers=info.num_layers,
            vocab_size=info.vocab_size,
            checkpointing=True,
        )
        budget["total_checkpointed"] = budget["total"] - budget["activations"] + checkpointed
    return budget


def estimate(
    spec: TrainingSpec,
    info: ModelInfo,
    *,
    stats: TokenStats | None,
    train_rows: int,
    tokens_per_second: float | None,
) -> Estimates:
    """Parameters, memory, steps, tokens and time (time only from measured throughput)."""
    trainable, total = trainable_parameters(spec, info)
    seq_len = min(spec.max_seq_length, stats.p95 if stats else spec.max_seq_length)
    steps = (
        spec.max_steps or max(1, -(-train_rows // spec.effective_batch_size)) * spec.n_epochs
        if train_rows
        else None
    )
    tokens = None
    if stats and train_rows:
        mean = fmean(min(n, spec.max_seq_length) for n in stats.lengths)
        examples = (
            spec.max_steps * spec.effective_batch_size if spec.max_steps else train_rows * spec.n_epochs
        )
        tokens = int(mean * examples)
    seconds, basis = None, Estimates.seconds_basis
    if tokens and tokens_per_second:
        seconds, basis = (
            tokens / tokens_per_second,
            f"measured {tokens_per_second:,.0f} tokens/s on earlier jobs with this model",
        )
    return Estimates(
        trainable_params=trainable,
        total_params=total,
        trainable_percent=100 * trainable / total if total else 0.0,
        memory_bytes=memory_bytes(spec, info, trainable, seq_len),
        steps=steps,
        tokens=tokens,
        seconds=seconds,
        seconds_basis=basis,
    )
