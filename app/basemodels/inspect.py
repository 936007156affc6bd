"""What a model folder holds, read from config.json and safetensors headers (no torch).

The advisor and the submission checks use it: linear layer names (for target_modules), depth,
widths, parameter counts, and the pad token.
"""

import json
import re
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from math import prod
from pathlib import Path
from typing import Any

# 2-D weights that are lookup tables, not linear layers (peft's all-linear skips them too).
EMBEDDING_HINTS = ("embed", "wte", "wpe", "shared", "relative_attention_bias", "position_embeddings")
LAYER_INDEX = re.compile(r"\.(?:layers|h|layer|block|blocks)\.(\d+)\.")


@dataclass(frozen=True)
class LinearLayer:
    """One linear (or GPT-2 Conv1D) weight: its module path and (in, out) features."""

    path: str
    in_features: int
    out_features: int
    layer_index: int | None

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a base model that submission checks and estimates need."""

    architecture: str
    model_type: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    n_params: int
    max_position_embeddings: int | None
    has_pad_token: bool
    is_encoder_decoder: bool
    linear_layers: tuple[LinearLayer, ...] = field(repr=False)
    param_shapes: dict[str, tuple[int, ...]] = field(repr=False)

    @property
    def linear_names(self) -> list[str]:
        """Distinct leaf names of the linear layers, e.g. ['down_proj', 'gate_proj', …]."""
        return sorted({layer.name for layer in self.linear_layers if layer.name != "lm_head"})

    def match(self, target: str) -> list[LinearLayer]:
        """Linear layers peft would adapt for ``target`` (exact path or dotted suffix)."""
        return [x for x in self.linear_layers if x.path == target or x.path.endswith("." + target)]


MAX_HEADER_BYTES = 100 * 1024 * 1024


class UnreadableModel(ValueError):
    """The folder's weights or config cannot be read; the message says which file."""


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes), validated."""
    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > min(MAX_HEADER_BYTES, path.stat().st_size - 8):
                raise ValueError("header length is out of range")
            header = json.loads(handle.read(size))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError, struct.error) as exc:
        raise UnreadableModel(f"{path.name} is not a valid safetensors file ({exc})") from None
    return {k: v for k, v in header.items() if k != "__metadata__"}


def _headers(folder: Path) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        entries.update(read_safetensors_header(path))
    return entries


def _linear_layers(model_type: str, shapes: dict[str, tuple[int, ...]]) -> tuple[LinearLayer, ...]:
    layers = []
    for name, shape in shapes.items():
        if len(shape) != 2 or not name.endswith(".weight"):
            continue
        path = name.removesuffix(".weight")
        if any(hint in path for hint in EMBEDDING_HINTS):
            continue
        # GPT-2's Conv1D stores (in, out); nn.Linear stores (out, in).
        in_features, out_features = (shape[0], shape[1]) if model_type == "gpt2" else (shape[1], shape[0])
        index = LAYER_INDEX.search("." + path + ".")
        layers.append(LinearLayer(path, in_features, out_features, int(index.group(1)) if index else None))
    return tuple(sorted(layers, key=lambda layer: layer.path))


def _config_int(config: dict[str, Any], *names: str) -> int | None:
    for name in names:
        if isinstance(config.get(name), int):
            return int(config[name])
    return None


@lru_cache(maxsize=32)
def _inspect(folder: str, fingerprint: tuple[tuple[str, float, int], ...]) -> ModelInfo:
    path = Path(folder)
    config = json.loads((path / "config.json").read_text("utf-8"))
    shapes = {name: tuple(entry["shape"]) for name, entry in _headers(path).items()}
    model_type = str(config.get("model_type", ""))
    tokenizer_config: dict[str, Any] = {}
    if (path / "tokenizer_config.json").exists():
        tokenizer_config = json.loads((path / "tokenizer_config.json").read_text("utf-8"))
    return ModelInfo(
        architecture=str((config.get("architectures") or [model_type])[0]),
        model_type=model_type,
        num_layers=_config_int(config, "num_hidden_layers", "n_layer", "num_layers") or 0,
        hidden_size=_config_int(config, "hidden_size", "n_embd", "d_model") or 0,
        vocab_size=_config_int(config, "vocab_size") or 0,
        n_params=sum(prod(shape) for shape in shapes.values()),
        max_position_embeddings=_config_int(config, "max_position_embeddings", "n_positions"),
        has_pad_token=bool(tokenizer_config.get("pad_token")) or config.get("pad_token_id") is not None,
        is_encoder_decoder=bool(config.get("is_encoder_decoder")),
        linear_layers=_linear_layers(model_type, shapes),
        param_shapes=shapes,
    )


def inspect_model(folder: str | Path) -> ModelInfo:
    """ModelInfo for a registered model folder (cached until its config or weights change)."""
    path = Path(folder).resolve()
    files = [path / "config.json", *sorted(path.glob("*.safetensors"))]
    fingerprint = tuple((f.name, f.stat().st_mtime, f.stat().st_size) for f in files)
    return _inspect(str(path), fingerprint)
