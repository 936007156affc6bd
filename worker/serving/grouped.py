"""A mixed-adapter LoRA forward in two matmuls per layer, whatever the number of adapters.

peft's own mixed batch (``adapter_names``) loops over the distinct adapters of a batch in every
LoRA layer: gather that adapter's rows, two small matmuls, scatter the result back; with 8
adapters in a batch that is ~40 small operations per layer per decode step, and on a CPU the
step is all overhead. Here the distinct adapters' A matrices are stacked once per set of
adapters (``A`` is [sum of ranks, in], ``B`` is [out, sum of ranks]), every row goes through all
of them at once (``x @ A.T``: a handful of columns per adapter), a per-row mask keeps only the
row's own adapter's columns (scaled by its ``alpha / r``), and one matmul with ``B`` adds the
update: two matmuls per layer, no copy of A or B per token, and the masked-out products are
exact zeros, so each row's output is its adapter's.

``install()`` puts this in place of ``_mixed_batch_forward`` on peft's LoRA ``Linear`` in the
model server's process; layers with LoRA variants (DoRA and the like) keep peft's loop.
"""

from typing import Any

import torch

from worker.serving.batching import BASE

_STACKS = "_tunedeck_stacks"
_installed = False
enabled = True  # False: peft's own loop (bench/serving.py measures both)


def install() -> None:
    global _installed
    if _installed:
        return
    from peft.tuners.lora import layer

    original = layer.Linear._mixed_batch_forward

    def mixed_batch_forward(
        self: Any, x: torch.Tensor, *args: Any, adapter_names: list[str], **kwargs: Any
    ) -> Any:
        names = [n for n in dict.fromkeys(adapter_names) if n != BASE and n in self.lora_A]
        if (
            not enabled
            or not names
            or any(n in self.lora_variant for n in names)
            or kwargs.get("alora_offsets") is not None
        ):
            return original(self, x, *args, adapter_names=adapter_names, **kwargs)
        kwargs.pop("alora_offsets", None)  # None here (checked above): not for the base layer
        result = self.base_layer(x, *args, **kwargs)
        a, b, mask = _stacks(self, names, adapter_names, x)
        low = (x.to(a.dtype) @ a.T) * (mask.unsqueeze(1) if x.dim() == 3 else mask)
        return result + (low @ b.T).to(result.dtype)

    layer.Linear._mixed_batch_forward = mixed_batch_forward
    _installed = True


def _stacks(module: Any, names: list[str], rows: list[str], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The stacked A and B of ``names`` and the rows' mask, kept on the layer while its set of
    adapters (and the rows' order) stays the same: rebuilt when a reply joins or leaves."""
    cache: dict[Any, Any] = module.__dict__.setdefault(_STACKS, {})
    key = tuple(names)
    stacked = cache.get(key)
    if stacked is None:
        if len(cache) > 8:
            cache.clear()
        a = torch.cat([module.lora_A[n].weight for n in names], dim=0)
        b = torch.cat([module.lora_B[n].weight for n in names], dim=1)
        spans, start = {}, 0
        for n in names:
            rank = module.lora_A[n].weight.shape[0]
            spans[n] = (start, start + rank, float(module.scaling[n]))
            start += rank
        stacked = cache[key] = (a, b, spans, {})
    a, b, spans, masks = stacked
    mask = masks.get(tuple(rows))
    if mask is None:
        mask = torch.zeros((len(rows), a.shape[0]), dtype=a.dtype, device=a.device)
        for i, name in enumerate(rows):
            if name in spans:
                low, high, scale = spans[name]
                mask[i, low:high] = scale
        if len(masks) > 16:
            masks.clear()
        masks[tuple(rows)] = mask
    return a, b, mask


def forget(model: Any) -> None:
    """Drop every layer's stacks (an adapter was unloaded: its tensors must not stay referenced)."""
    for module in model.modules():
        module.__dict__.pop(_STACKS, None)
