"""Models in memory and generation.

One copy of each base model is loaded once. Adapters (finished jobs and checkpoints) are loaded
onto it on demand with peft's ``load_adapter`` and switched with ``set_adapter``; the last
``max_adapters`` stay loaded (LRU), never counting out one that a reply under way still uses.
Merged models load as plain models (an LRU of ``max_merged``).

Replies are batched (worker/serving/batching.py): on each base, the replies under way share
one forward pass per decode step whatever adapter (or none) each uses, new ones join between two
steps, and a long prompt is prefilled in chunks between them. With greedy decoding each reply
equals what its model alone would say.

``Engine(batching=False)`` keeps the engine before batching, for the benchmark: replies on one
base take turns a token at a time, in arrival order (a FIFO lock handed on between two forward
passes); each turn first puts the base in its reply's state (that reply's adapter active, or
every adapter layer disabled for the base alone).
"""

import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from app.core.catalog import ServedModel
from app.core.storage import get_store
from worker.serving import grouped
from worker.serving.batching import BASE, Batcher, Request

log = logging.getLogger(__name__)


class FairLock:
    """A lock granted in the order it was asked for (threading.Lock makes no such promise)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False

    @contextmanager
    def hold(self) -> Iterator[None]:
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            while self._held or self._waiting[0] is not ticket:
                self._cond.wait()
            self._waiting.popleft()
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def take_turns(self) -> bool:
        """Called by the holder between two steps: when others wait, hand the lock to them (in
        the order they asked) and wait for the next turn. True if the lock changed hands."""
        with self._cond:
            if not self._waiting:
                return False
            self._held = False
            ticket = object()
            self._waiting.append(ticket)
            self._cond.notify_all()
            while self._held or self._waiting[0] is not ticket:
                self._cond.wait()
            self._waiting.popleft()
            self._held = True
            return True


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None


@dataclass
class Result:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop, length or cancelled
    first_token_s: float | None
    total_s: float


class _Streamer(BaseStreamer):
    """Decodes the generated ids as they come and hands each new piece of text on."""

    def __init__(
        self,
        tokenizer: Any,
        on_text: Callable[[str], None] | None,
        started: float,
        between_tokens: Callable[[], None] | None = None,
    ) -> None:
        self.tokenizer, self.on_text, self.started = tokenizer, on_text, started
        self.between_tokens = between_tokens
        self.ids: list[int] = []
        self.sent = ""
        self.prompt_seen = False
        self.first_token_s: float | None = None

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self.started
        self.ids.extend(int(i) for i in value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            if self.between_tokens:
                self.between_tokens()
            return
        piece, self.sent = text[len(self.sent) :], text
        if piece and self.on_text:
            self.on_text(piece)
        if self.between_tokens:  # the next forward pass has not started: a safe point to pause
            self.between_tokens()

    def end(self) -> None:
        pass


class _Cancelled(StoppingCriteria):
    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full(
            (input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool, device=input_ids.device
        )


@dataclass
class _Slot:
    model: Any
    tokenizer: Any
    lock: FairLock = field(default_factory=FairLock)
    adapters: "OrderedDict[str, str]" = field(default_factory=OrderedDict)  # peft name -> served id
    peft: bool = False
    in_use: Counter[str] = field(default_factory=Counter)  # adapters of replies under way: kept loaded
    state: str | None = None  # whose state the base is in ("base" or an adapter); None: the default
    batcher: Batcher | None = None


def _folder(served: ServedModel) -> str:
    """The local folder to load ``served`` from: its artifact through the store (a cached copy
    when the store is S3), or ``path`` itself for models that are not artifacts."""
    if served.artifact_key is None:
        return served.path
    return str(get_store().local_path(served.artifact_key))


def _adapter_name(served: ServedModel) -> str:
    """The peft name of ``served``'s adapter: of its name and its folder, so a job whose adapter
    became one of its checkpoints loads that one on the next request (peft names become module keys)."""
    key = f"{served.id}|{served.artifact_key or served.path}"
    return "a" + hashlib.sha1(key.encode()).hexdigest()[:16]


class Engine:
    def __init__(
        self, max_adapters: int = 8, max_merged: int = 2, *, batching: bool = True, prefill_chunk: int = 256
    ) -> None:
        self.max_adapters, self.max_merged = max_adapters, max_merged
        self.batching, self.prefill_chunk = batching, prefill_chunk
        self.cuda = torch.cuda.is_available()
        self.dtype = torch.bfloat16 if self.cuda and torch.cuda.is_bf16_supported() else torch.float32
        self._bases: dict[str, _Slot] = {}
        self._merged: OrderedDict[str, _Slot] = OrderedDict()
        self._loading = threading.Lock()
        self._loading_now: set[str] = set()  # bases and merged models whose weights are loading
        self.timings: dict[str, float] = {}  # what the last loads took (for the benchmark)
        self.stats = {"requests": 0, "cancelled": 0, "completion_tokens": 0}

    def _load(self, path: str, trust_remote_code: bool) -> _Slot:
        started = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=self.dtype,
            device_map={"": 0} if self.cuda else None,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if trust_remote_code else True,  # no pickle unless trusted
        ).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        self.timings["load_model_s"] = time.perf_counter() - started
        return _Slot(model, tokenizer)

    def _base(self, served: ServedModel) -> _Slot:
        with self._loading:
            if served.base not in self._bases:
                log.info("loading base model %s", served.base)
                self._loading_now.add(served.base)
                try:
                    self._bases[served.base] = self._load(served.base_path, served.trust_remote_code)
                finally:
                    self._loading_now.discard(served.base)
            return self._bases[served.base]

    def _merged_slot(self, served: ServedModel) -> _Slot:
        with self._loading:
            if served.id in self._merged:
                self._merged.move_to_end(served.id)
            else:
                self._loading_now.add(served.id)
                try:
                    self._merged[served.id] = self._load(_folder(served), served.trust_remote_code)
                finally:
                    self._loading_now.discard(served.id)
                while len(self._merged) > self.max_merged:
                    self._merged.popitem(last=False)
            return self._merged[served.id]

    def _activate(self, slot: _Slot, served: ServedModel) -> None:
        """Make ``served``'s adapter the active one (loading it, evicting the least recent)."""
        name = self._load_adapter(slot, served)
        started = time.perf_counter()
        if slot.model.active_adapter != name:  # set_adapter walks every LoRA layer
            slot.model.set_adapter(name)
        self.timings["switch_adapter_s"] = time.perf_counter() - started

    def _load_adapter(self, slot: _Slot, served: ServedModel) -> str:
        """``served``'s adapter loaded onto its base (the least recent evicted); its peft name."""
        from peft import PeftModel

        name = _adapter_name(served)
        if name in slot.adapters:
            slot.adapters.move_to_end(name)
        else:
            started = time.perf_counter()
            folder = _folder(served)
            if not slot.peft:
                slot.model = PeftModel.from_pretrained(slot.model, folder, adapter_name=name).eval()
                slot.peft = True
            else:
                slot.model.load_adapter(folder, adapter_name=name)
            slot.adapters[name] = served.id
            self.timings["load_adapter_s"] = time.perf_counter() - started
            self._evict(slot, keep=name)
        return name

    def _evict(self, slot: _Slot, keep: str | None = None) -> None:
        """Unload the least recently used adapters beyond ``max_adapters``, except those of replies
        under way (they may hold more for a while) and ``keep``."""
        idle = [n for n in slot.adapters if n != keep and not slot.in_use[n]]
        for evicted in idle[: max(0, len(slot.adapters) - self.max_adapters)]:
            del slot.adapters[evicted]
            slot.model.delete_adapter(evicted)
            grouped.forget(slot.model)

    def preload(self, served: ServedModel) -> None:
        """Load ``served``'s weights now (a base, or a merged model), before anyone asks."""
        if self.batching:
            self._batcher(served)
        elif served.kind == "merged":
            self._merged_slot(served)
        else:
            self._base(served)

    def loading(self) -> list[str]:
        return sorted(self._loading_now)

    def state(self, served: ServedModel) -> str:
        """ "ready" when ``served``'s weights are in memory (an adapter loads in a moment on its
        base), "loading" while they load, "cold" when the next request loads them first."""
        key = served.id if served.kind == "merged" else served.base
        if key in self._loading_now:
            return "loading"
        return "ready" if key in (self._merged if served.kind == "merged" else self._bases) else "cold"

    def loaded(self) -> dict[str, list[str]]:
        """What is in memory: base → its loaded adapters (most recent last), and merged models."""
        out = {base: list(slot.adapters.values()) for base, slot in self._bases.items()}
        out["merged"] = list(self._merged)
        return out

    def generate(
        self,
        served: ServedModel,
        messages: list[dict[str, str]],
        sampling: Sampling,
        cancel: threading.Event | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Result:
        """Generate a reply to ``messages`` with ``served``; ``on_text`` gets each piece as it comes."""
        cancel = cancel or threading.Event()
        if not self.batching:
            with self._using(served) as (model, tokenizer, between_tokens):
                return self._run(model, tokenizer, messages, sampling, cancel, on_text, between_tokens)
        slot, batcher = self._batcher(served)
        prompt = slot.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"][0].tolist()
        request = Request(
            prompt=prompt,
            adapter=None if served.kind in ("base", "merged") else _adapter_name(served),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
            cancel=cancel,
            on_text=on_text,
        )
        request.served = served
        batcher.submit(request)
        self.stats["requests"] += 1
        self.stats["cancelled"] += int(request.finish_reason == "cancelled")
        self.stats["completion_tokens"] += len(request.generated)
        return Result(
            text=slot.tokenizer.decode(request.generated, skip_special_tokens=True),
            prompt_tokens=len(prompt),
            completion_tokens=len(request.generated),
            finish_reason=request.finish_reason or "stop",
            first_token_s=request.first_token_s,
            total_s=time.perf_counter() - request.started,
        )

    def _batcher(self, served: ServedModel) -> tuple[_Slot, Batcher]:
        """The slot that runs ``served`` and its batcher (made on first use)."""
        slot = self._merged_slot(served) if served.kind == "merged" else self._base(served)
        with self._loading:
            if slot.batcher is None:

                def admit(request: Request) -> None:  # on the batcher's thread, between passes
                    if request.adapter is not None:
                        self._load_adapter(slot, request.served)
                        slot.in_use[request.adapter] += 1

                def finish(request: Request) -> None:
                    if request.adapter is not None:
                        slot.in_use[request.adapter] -= 1
                        slot.in_use += Counter()  # drop zero counts
                        self._evict(slot)

                grouped.install()  # rows of several adapters: two matmuls per LoRA layer
                slot.batcher = Batcher(
                    served.base if served.kind != "merged" else served.id,
                    lambda: slot.model,
                    slot.tokenizer,
                    prefill_chunk=self.prefill_chunk,
                    on_admit=admit,
                    on_finish=finish,
                )
            return slot, slot.batcher

    def choice_logprobs(
        self, served: ServedModel, messages: list[dict[str, str]], choices: list[str]
    ) -> list[tuple[float, int]]:
        """For each choice: the log-probability ``served`` gives it as the reply to ``messages``
        (summed over its tokens), and its number of tokens. No generation: one forward pass each."""
        if not self.batching:
            with self._using(served) as (model, tokenizer, _):
                return self._score(model, tokenizer, messages, choices, {})
        slot, batcher = self._batcher(served)

        def score() -> list[tuple[float, int]]:  # on the batcher's thread, between two passes
            extra: dict[str, Any] = {}
            if served.kind not in ("base", "merged"):
                extra["adapter_names"] = [self._load_adapter(slot, served)]
            elif slot.peft and served.kind == "base":
                extra["adapter_names"] = [BASE]
            return self._score(slot.model, slot.tokenizer, messages, choices, extra)

        return list(batcher.call(score))

    @staticmethod
    def _score(
        model: Any, tokenizer: Any, messages: list[dict[str, str]], choices: list[str], extra: dict[str, Any]
    ) -> list[tuple[float, int]]:
        prompt = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        scores = []
        for choice in choices:
            ids = tokenizer(choice, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
            full = torch.cat([prompt, torch.tensor([ids])], dim=1).to(model.device)
            with torch.inference_mode():
                logits = model(input_ids=full, **extra).logits[0, prompt.shape[1] - 1 : -1].float()
            target = torch.tensor(ids, device=logits.device).unsqueeze(1)
            scores.append((float(torch.log_softmax(logits, -1).gather(1, target).sum()), len(ids)))
        return scores

    @contextmanager
    def _using(self, served: ServedModel) -> Iterator[tuple[Any, Any, Callable[[], Any] | None]]:
        """The model and tokenizer in ``served``'s state, held for one reply (or one scoring), and
        what to call between tokens so that replies on one base take turns."""
        if served.kind == "merged":
            slot = self._merged_slot(served)
            with slot.lock.hold():
                yield slot.model, slot.tokenizer, slot.lock.take_turns
            return
        # Replies on one base take turns a token at a time (so panes side by side stream together);
        # each turn first puts the base in this reply's state: its adapter active, or none.
        slot = self._base(served)
        name = _adapter_name(served)

        key = "base" if served.kind == "base" else name

        def enter() -> None:
            if slot.state == key:  # the reply before left it as this one needs it
                return
            if served.kind == "base":
                if slot.peft:
                    slot.model.base_model.disable_adapter_layers()
            else:
                self._activate(slot, served)
                slot.model.base_model.enable_adapter_layers()
            slot.state = key

        def between_tokens() -> None:
            if slot.lock.take_turns():
                enter()

        with slot.lock.hold():
            if served.kind != "base":
                slot.in_use[name] += 1
            try:
                enter()
                yield slot.model, slot.tokenizer, between_tokens  # later adapters go into these layers
            finally:
                if served.kind != "base":
                    slot.in_use[name] -= 1
                    slot.in_use += Counter()  # drop zero counts
                if slot.peft and slot.state == "base":
                    slot.model.base_model.enable_adapter_layers()  # the default state between replies
                slot.state = None
                self._evict(slot)

    def _run(
        self,
        model: Any,
        tokenizer: Any,
        messages: list[dict[str, str]],
        sampling: Sampling,
        cancel: threading.Event,
        on_text: Callable[[str], None] | None,
        between_tokens: Callable[[], None] | None = None,
    ) -> Result:
        started = time.perf_counter()
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(model.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        streamer = _Streamer(tokenizer, on_text, started, between_tokens)
        sample = sampling.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": sample,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_Cancelled(cancel)]),
            "pad_token_id": tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
        }
        if sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            output = model.generate(**inputs, **kwargs)
        generated = output[0, prompt_tokens:]
        text = tokenizer.decode(generated, skip_special_tokens=True)
        self.stats["requests"] += 1
        self.stats["cancelled"] += int(cancel.is_set())
        self.stats["completion_tokens"] += len(generated)
        if cancel.is_set():
            reason = "cancelled"
        elif len(generated) >= sampling.max_new_tokens and int(generated[-1]) != tokenizer.eos_token_id:
            reason = "length"
        else:
            reason = "stop"
        return Result(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(generated),
            finish_reason=reason,
            first_token_s=streamer.first_token_s,
            total_s=time.perf_counter() - started,
        )
