"""Continuous batching on one loaded model: many replies, one forward pass per decode step.

A ``Batcher`` owns one model (a base with its LoRA adapters, or a merged model) and one scheduler
thread, the only thread that runs that model. Each request is prefilled alone into its own KV
cache, at most ``prefill_chunk`` prompt tokens (over one or more requests) between two decode
steps of the running batch (so a long prompt never stalls the replies already streaming), then
joins the batch: its cache is
left-padded to the batch's length (or the batch's to its) and stacked on the others. Every decode
step feeds each row its last token at its own position (RoPE positions count only a row's real
tokens; the padding is masked out), samples each row with its own settings and generator, and
streams each row's text. A row leaves when it stops (an end token, ``max_new_tokens``, or a
cancel — a disconnect ends only that request); columns no row needs any more are trimmed.

Rows of different adapters share the pass: peft's mixed-adapter batches (``adapter_names``, one
entry per row, ``"__base__"`` for the base alone) run the base's matmul once for the whole batch
and each adapter's low-rank update on its own rows only. With greedy decoding each reply equals
what its model alone produces.

Work that must not overlap a forward pass (loading or evicting an adapter, scoring choices) runs
on the scheduler thread between two steps: ``call``.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

log = logging.getLogger(__name__)

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass
class Request:
    """One reply under way. ``adapter`` is the peft adapter name (None: the model itself)."""

    prompt: list[int]
    adapter: str | None
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int | None
    cancel: threading.Event
    on_text: Callable[[str], None] | None = None
    started: float = field(default_factory=time.perf_counter)
    generated: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    first_token_s: float | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    # scheduler state
    cache: Any = None  # its own cache while it is prefilled
    prefilled: int = 0
    position: int = 0  # real tokens in its KV cache (its next RoPE position)
    next_token: int | None = None  # sampled, not fed yet
    served: Any = None  # what the engine asked for (its adapter is loaded on admission)
    sent: str = ""
    generator: torch.Generator | None = None


class Batcher:
    """The one thread that runs ``model_of()``; see the module docstring."""

    def __init__(
        self,
        name: str,
        model_of: Callable[[], Any],
        tokenizer: Any,
        *,
        prefill_chunk: int = 256,
        max_batch: int = 32,
        on_admit: Callable[[Request], None] | None = None,
        on_finish: Callable[[Request], None] | None = None,
    ) -> None:
        self.name, self.model_of, self.tokenizer = name, model_of, tokenizer
        self.prefill_chunk, self.max_batch = prefill_chunk, max_batch
        self.on_admit, self.on_finish = on_admit, on_finish
        self._inbox: queue.SimpleQueue[Request | Callable[[], None]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._prefilling: list[Request] = []
        self._rows: list[Request] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self.steps = 0  # decode steps run (for the benchmark)
        self.peak_batch = 0
        self._plain: bool | None = None  # whether its caches can be stacked (no sliding windows)
        config = getattr(model_of(), "generation_config", None)
        ends = getattr(config, "eos_token_id", None)
        ends = ends if isinstance(ends, list) else [ends]
        self.end_ids = {int(e) for e in [*ends, tokenizer.eos_token_id] if e is not None}
        self.top_k = int(getattr(config, "top_k", 0) or 0)
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    # -- from request threads -------------------------------------------------------------------

    def submit(self, request: Request) -> Request:
        """Queue ``request`` and wait until it is done (its text streamed through ``on_text``)."""
        self._inbox.put(request)
        self._wake.set()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the scheduler thread between two steps and return what it returns."""
        box: dict[str, Any] = {}
        finished = threading.Event()

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            finally:
                finished.set()

        self._inbox.put(run)
        self._wake.set()
        finished.wait()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    @property
    def busy(self) -> int:
        return len(self._rows) + len(self._prefilling)

    # -- the scheduler thread -------------------------------------------------------------------

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                self._turn()

    def _may_start(self, request: Request) -> bool:
        """Whether to go on prefilling ``request`` now: one under way goes on; a new one waits while
        the batch is full, or while anything runs on a model whose caches cannot be stacked."""
        if request.prefilled:
            return True
        return len(self._rows) < self.max_batch and (self._plain is not False or not self._rows)

    def _turn(self) -> None:
        if not self._rows and not self._prefilling and self._inbox.empty():
            self._wake.wait()
        self._wake.clear()
        self._take_inbox()
        budget = self.prefill_chunk  # prompt tokens per turn, over as many requests as fit
        while budget > 0 and self._prefilling and self._may_start(self._prefilling[0]):
            request = self._prefilling[0]
            try:
                budget -= self._prefill_step(request, budget)
            except Exception as exc:  # its prompt failed (say, out of memory): only it ends
                log.exception("batcher %s: prefilling a request failed", self.name)
                if request in self._prefilling:
                    self._prefilling.remove(request)
                self._finish(request, error=exc)
        if self._rows:
            try:
                self._decode_step()
            except Exception as exc:  # a failed pass fails the replies in it, not the server
                log.exception("batcher %s: a decode step failed", self.name)
                rows, self._rows, self._cache, self._mask = self._rows, [], None, None
                for request in rows:
                    self._finish(request, error=exc)

    def _take_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Request):
                try:
                    if self.on_admit:
                        self.on_admit(item)  # e.g. load its adapter: nothing runs the model now
                except BaseException as exc:
                    item.error = exc
                    item.done.set()
                    continue
                if item.seed is not None and item.temperature > 0:
                    item.generator = torch.Generator().manual_seed(int(item.seed))
                self._prefilling.append(item)
            else:
                item()

    def _adapters(self, requests: list[Request]) -> dict[str, Any]:
        """How to run these rows: rows all of one adapter run it as the active one (the plain LoRA
        forward); a mix, or the base alone, names each row's adapter (peft's mixed batch)."""
        model = self.model_of()
        if not hasattr(model, "peft_config"):
            return {}
        names = {r.adapter for r in requests}
        if len(names) == 1 and None not in names:
            (name,) = names
            if model.active_adapter != name:
                model.set_adapter(name)  # walks every LoRA layer: only when a run of rows changes it
            return {}
        return {"adapter_names": [r.adapter or BASE for r in requests]}

    def _prefill_step(self, request: Request, limit: int) -> int:
        """Prefill up to ``limit`` more of the request's prompt; the tokens it took."""
        if request.cancel.is_set():
            self._prefilling.remove(request)
            self._finish(request, reason="cancelled")
            return 0
        model = self.model_of()
        if request.cache is None:
            request.cache = DynamicCache()
        start = request.prefilled
        end = min(len(request.prompt), start + limit)
        ids = torch.tensor([request.prompt[request.prefilled : end]], device=model.device)
        with torch.inference_mode():
            out = model(
                input_ids=ids, past_key_values=request.cache, use_cache=True, **self._adapters([request])
            )
        request.prefilled = request.position = end
        if end < len(request.prompt):
            return end - start
        self._prefilling.remove(request)
        token = self._sample(out.logits[0, -1], request)
        if self._emit(request, token):
            self._join(request)
        return end - start

    def _join(self, request: Request) -> None:
        """Stack the request's cache onto the batch's, left-padding the shorter."""
        cache, request.cache = request.cache, None
        length = request.position
        mask = torch.ones((1, length), dtype=torch.long, device=self._device())
        if self._plain is None:
            self._plain = self._batchable(cache)
        if self._cache is None:
            self._cache, self._mask, self._rows = cache, mask, [request]
            self.peak_batch = max(self.peak_batch, 1)
            return
        batch_length = int(self._mask.shape[1]) if self._mask is not None else 0
        width = max(batch_length, length)
        for mine, theirs in zip(cache.layers, self._cache.layers, strict=True):
            mine_k, mine_v = _left_pad(mine.keys, width), _left_pad(mine.values, width)
            theirs.keys = torch.cat([_left_pad(theirs.keys, width), mine_k], dim=0)
            theirs.values = torch.cat([_left_pad(theirs.values, width), mine_v], dim=0)
        assert self._mask is not None
        self._mask = torch.cat([_left_pad(self._mask, width), _left_pad(mask, width)], dim=0)
        self._rows.append(request)
        self.peak_batch = max(self.peak_batch, len(self._rows))

    @staticmethod
    def _batchable(cache: Any) -> bool:
        return all(type(layer) is DynamicLayer for layer in cache.layers)

    def _device(self) -> torch.device:
        return torch.device(self.model_of().device)

    def _decode_step(self) -> None:
        for request in [r for r in self._rows if r.cancel.is_set()]:
            self._leave(request, "cancelled")
        if not self._rows:
            return
        model = self.model_of()
        assert self._mask is not None
        rows = self._rows
        device = self._device()
        ids = torch.tensor([[r.next_token] for r in rows], device=device)
        mask = torch.cat(
            [self._mask, torch.ones((len(rows), 1), dtype=self._mask.dtype, device=device)], dim=1
        )
        positions = torch.tensor([[r.position] for r in rows], device=device)
        with torch.inference_mode():
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=self._cache,
                use_cache=True,
                **self._adapters(rows),
            )
        self._mask = mask
        self.steps += 1
        logits = out.logits[:, -1]
        ended = []
        for i, request in enumerate(rows):
            request.position += 1
            if not self._emit(request, self._sample(logits[i], request)):
                ended.append(request)
        for request in ended:
            self._leave(request, None)

    def _emit(self, request: Request, token: int) -> bool:
        """Record and stream ``token``; False when the request is done with it."""
        if request.first_token_s is None:
            request.first_token_s = time.perf_counter() - request.started
        request.generated.append(token)
        text = self.tokenizer.decode(request.generated, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # not half of a multi-byte character
            piece, request.sent = text[len(request.sent) :], text
            if piece and request.on_text:
                try:
                    request.on_text(piece)
                except Exception:  # a listener gone: that request ends, the batch goes on
                    request.cancel.set()
        if token in self.end_ids:
            request.finish_reason = "stop"
        elif len(request.generated) >= request.max_new_tokens:
            request.finish_reason = "length"
        elif request.cancel.is_set():
            request.finish_reason = "cancelled"
        else:
            request.next_token = token
            return True
        if request not in self._rows:  # ended at its first token: it never joined
            self._finish(request)
        return False

    def _leave(self, request: Request, reason: str | None) -> None:
        keep = [i for i, r in enumerate(self._rows) if r is not request]
        self._rows = [self._rows[i] for i in keep]
        if not self._rows:
            self._cache, self._mask = None, None
        else:
            index = torch.tensor(keep, device=self._device())
            assert self._mask is not None
            mask = self._mask.index_select(0, index)
            first = int((mask.sum(dim=0) > 0).nonzero()[0])  # columns before are padding in every row
            self._mask = mask[:, first:]
            for layer in self._cache.layers:
                layer.keys = layer.keys.index_select(0, index)[:, :, first:]
                layer.values = layer.values.index_select(0, index)[:, :, first:]
        self._finish(request, reason=reason)

    def _finish(
        self, request: Request, reason: str | None = None, error: BaseException | None = None
    ) -> None:
        request.cache = None
        if reason:
            request.finish_reason = reason
        request.error = error
        try:
            if self.on_finish:
                self.on_finish(request)
        finally:
            request.done.set()

    def _sample(self, logits: torch.Tensor, request: Request) -> int:
        if request.temperature <= 0:
            return int(torch.argmax(logits))
        scores = logits.float() / request.temperature
        if self.top_k and self.top_k < scores.shape[-1]:
            kth = torch.topk(scores, self.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if request.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True)
            cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            cut = cumulative - torch.softmax(ordered, dim=-1) > request.top_p  # keep the first over top_p
            scores = scores.masked_fill(torch.zeros_like(cut).scatter(0, order, cut), float("-inf"))
        probabilities = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probabilities, 1, generator=request.generator))


def _left_pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """``tensor`` with zeros before its sequence axis (dim 2 of a KV tensor, dim 1 of a mask)."""
    axis = 2 if tensor.dim() == 4 else 1
    missing = width - tensor.shape[axis]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)
