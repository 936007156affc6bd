"""Model serving, measured side by side in one run with the model server's own engine
(worker/serving/engine.py) on SmolLM2-135M-Instruct: today's batching engine against the engine
before it (``Engine(batching=False)``: replies on one base take turns a token at a time).

A. aggregate tokens/s with 1, 4, 8 and 16 concurrent requests over 1, 4 and 16 adapters (all
   loaded), batched vs taking turns;
B. time to first token of a request that arrives while 8 others stream, against one prefill (a
   lone request's first token) plus one decode step of the batch;
C. a batch of rows over 8 adapters: our grouped low-rank matmul vs peft's per-adapter loop;
D. a batch compare of 50 prompts x 2 models as the short lane runs it now (8 cells at once on the
   batching engine) vs before (one cell after another, taking turns);

and, on the engine before batching (the switch timings are its own):

1. switching to an adapter already in memory (peft ``set_adapter``) vs loading the base and the
   adapter afresh for the request (what a server without hot-swapping does);
2. decode speed with one LoRA adapter active (unmerged: extra matmuls per layer) vs the same
   adapter merged into the weights (``merge_and_unload``, loaded as a plain model);
3. throughput as the number of adapters in use grows (1, 4, 16), requests cycling through them
   with every adapter kept loaded (LRU of 16), and with an LRU of 4 (so 16 means reloading);
4. two replies at once on one base (the playground's panes), taking turns a token at a time, vs
   the same replies one after the other.

    .venv/bin/python bench/serving.py                 # CPU here; CUDA when present
    .venv/bin/python bench/serving.py --tokens 64 --requests 32
    .venv/bin/python bench/serving.py --only batching   # A-C only

Adapters are random LoRA weights (r=8 on the attention projections, B not zero so they change
the output): serving cost does not depend on what they learned.
"""

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.core.catalog import ServedModel  # noqa: E402
from worker.serving.engine import Engine, Sampling  # noqa: E402

PROMPT = [{"role": "user", "content": "Explain in two sentences what a LoRA adapter is."}]


def default_model() -> Path:
    from app.core.config import get_settings

    return get_settings().model_cache_dir / "smollm2-135m-instruct"


def make_adapters(base: Path, folder: Path, n: int) -> list[Path]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = []
    for i in range(n):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        config = LoraConfig(
            r=8,
            lora_alpha=8,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        peft = get_peft_model(model, config)
        path = folder / f"adapter-{i}"
        peft.save_pretrained(path)
        out.append(path)
    return out


def merged_copy(base: Path, adapter: Path, folder: Path) -> Path:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter
    )
    path = folder / "merged"
    model.merge_and_unload().save_pretrained(path)
    AutoTokenizer.from_pretrained(base).save_pretrained(path)
    return path


def served(name: str, kind: str, base: Path, path: Path) -> ServedModel:
    return ServedModel(name, kind, "base", str(base), str(path), datetime.now(UTC))  # type: ignore[arg-type]


def concurrent_rate(
    engine: Engine, models: list[ServedModel], concurrency: int, requests: int, tokens: int
) -> float:
    """Aggregate generated tokens/s with ``concurrency`` requests in flight (cycling over ``models``)."""
    from concurrent.futures import ThreadPoolExecutor

    sampling = Sampling(temperature=0, max_new_tokens=tokens)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(
            pool.map(lambda i: engine.generate(models[i % len(models)], PROMPT, sampling), range(requests))
        )
    return sum(r.completion_tokens for r in done) / (time.perf_counter() - started)


def first_token_while_busy(engine: Engine, models: list[ServedModel], tokens: int) -> float:
    """The first-token time of a request sent while 8 others stream (their replies under way)."""
    import threading

    long = Sampling(temperature=0, max_new_tokens=tokens * 4)
    streaming = [0] * 8
    threads = []
    for i in range(8):

        def count(piece: str, i: int = i) -> None:
            streaming[i] += 1

        threads.append(
            threading.Thread(
                target=engine.generate, args=(models[i % len(models)], PROMPT, long, None, count)
            )
        )
    for thread in threads:
        thread.start()
    while min(streaming) < 2:  # all eight streaming
        time.sleep(0.005)
    result = engine.generate(models[0], PROMPT, Sampling(temperature=0, max_new_tokens=4))
    for thread in threads:
        thread.join()
    return result.first_token_s or 0.0


def batch_compare_seconds(
    engine: Engine, models: list[ServedModel], prompts: int, tokens: int, concurrency: int
) -> float:
    from concurrent.futures import ThreadPoolExecutor

    cells = [(p, m) for p in range(prompts) for m in models]
    sampling = Sampling(temperature=0, max_new_tokens=tokens)

    def answer(cell: tuple[int, ServedModel]) -> None:
        prompt, model = cell
        engine.generate(
            model, [{"role": "user", "content": f"Question {prompt}: what is {prompt} plus 1?"}], sampling
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(answer, cells))
    return time.perf_counter() - started


def batching_sections(args: argparse.Namespace, lora: list[ServedModel], base_model: ServedModel) -> None:
    batched, turns = Engine(max_adapters=16), Engine(max_adapters=16, batching=False)
    for engine in (batched, turns):  # every adapter loaded once: the table measures serving, not loading
        for model in lora:
            engine.generate(model, PROMPT, Sampling(temperature=0, max_new_tokens=1))
    print(f"A. aggregate tokens/s, {args.tokens} new tokens a request (batched | taking turns | ratio)")
    print(
        "   concurrent   "
        + "".join(f"{n:>2} adapter{'s' if n > 1 else ' '}                 " for n in (1, 4, 16))
    )
    table: dict[tuple[int, int], float] = {}
    before: dict[tuple[int, int], float] = {}
    for concurrency in (1, 4, 8, 16):
        row = f"   {concurrency:<10}"
        for n in (1, 4, 16):
            requests = max(args.requests // 2, concurrency)
            fast = concurrent_rate(batched, lora[:n], concurrency, requests, args.tokens)
            slow = concurrent_rate(turns, lora[:n], concurrency, requests, args.tokens)
            table[(concurrency, n)], before[(concurrency, n)] = fast, slow
            row += f"   {fast:6.1f} | {slow:6.1f} | {fast / slow:4.2f}x"
        print(row)
    print(f"   → at 8 concurrent over 1 adapter: {table[(8, 1)] / before[(8, 1)]:.2f}x taking turns")
    print(
        f"   → 16 adapters vs 1: {table[(8, 16)] / table[(8, 1)]:.2f} at 8 concurrent, "
        f"{table[(16, 16)] / table[(16, 1)]:.2f} at 16\n"
    )

    lone = statistics.median(
        batched.generate(lora[0], PROMPT, Sampling(temperature=0, max_new_tokens=1)).first_token_s or 0.0
        for _ in range(args.repeats)
    )
    batcher = batched._bases["base"].batcher
    assert batcher is not None
    steps_before, started = batcher.steps, time.perf_counter()
    concurrent_rate(batched, lora[:8], 8, 8, args.tokens)
    step = (time.perf_counter() - started) / max(1, batcher.steps - steps_before)
    busy_fast = statistics.median(
        first_token_while_busy(batched, lora, args.tokens) for _ in range(args.repeats)
    )
    busy_slow = statistics.median(
        first_token_while_busy(turns, lora, args.tokens) for _ in range(args.repeats)
    )
    print("B. first token of a request that arrives while 8 others stream (median)")
    print(f"   one prefill (a lone request's first token)   {lone * 1000:9.0f} ms")
    print(f"   one decode step of the 8-row batch           {step * 1000:9.0f} ms")
    print(
        f"   batched                                      {busy_fast * 1000:9.0f} ms"
        f"  (target ≤ {(lone + step) * 1000:.0f} ms)"
    )
    print(f"   taking turns                                 {busy_slow * 1000:9.0f} ms\n")

    from worker.serving import grouped

    print("C. rows of 8 different adapters in one batch: the LoRA update per layer (aggregate tokens/s)")
    for label, on in (
        ("grouped: two matmuls per layer (ours)", True),
        ("peft's loop over the adapters", False),
    ):
        grouped.enabled = on
        rate = concurrent_rate(batched, lora[:8], 8, max(args.requests // 2, 8), args.tokens)
        print(f"   {label:<44} {rate:7.1f}")
    grouped.enabled = True
    print()

    pair = [base_model, lora[0]]
    now = batch_compare_seconds(batched, pair, args.prompts, args.tokens, concurrency=8)
    before = batch_compare_seconds(turns, pair, args.prompts, args.tokens, concurrency=1)
    print(f"D. batch compare, {args.prompts} prompts x 2 models, {args.tokens} new tokens")
    print(f"   now (8 cells at once, batched)              {now:9.1f} s")
    print(f"   before (one cell after another, turns)      {before:9.1f} s")
    print(f"   → {before / now:.2f}x faster\n")


def fresh_load_seconds(base: Path, adapter: Path) -> float:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    AutoTokenizer.from_pretrained(base)
    PeftModel.from_pretrained(model, adapter).eval()
    return time.perf_counter() - started


def tokens_per_second(engine: Engine, models: list[ServedModel], requests: int, tokens: int) -> float:
    sampling = Sampling(temperature=0, max_new_tokens=tokens)
    generated, started = 0, time.perf_counter()
    for i in range(requests):
        generated += engine.generate(models[i % len(models)], PROMPT, sampling).completion_tokens
    return generated / (time.perf_counter() - started)


def decode_rate(engine: Engine, model: ServedModel, tokens: int, repeats: int) -> float:
    """Decode tokens/s after the first token (as the playground shows it), median of repeats."""
    rates = []
    for _ in range(repeats):
        result = engine.generate(model, PROMPT, Sampling(temperature=0, max_new_tokens=tokens))
        rates.append((result.completion_tokens - 1) / (result.total_s - (result.first_token_s or 0)))
    return statistics.median(rates)


def side_by_side_first_tokens(engine: Engine, models: list[ServedModel], tokens: int) -> list[float]:
    """Start one reply per model at once; the seconds until each one's first token."""
    import threading

    results: list[float] = []
    sampling = Sampling(temperature=0, max_new_tokens=tokens)
    start = threading.Barrier(len(models))

    def reply(model: ServedModel) -> None:
        start.wait()
        results.append(engine.generate(model, PROMPT, sampling).first_token_s or 0.0)

    threads = [threading.Thread(target=reply, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=default_model())
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per request")
    parser.add_argument("--requests", type=int, default=32, help="requests per adapter-count row")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=50, help="prompts of the batch compare (C)")
    parser.add_argument("--only", choices=["batching", "switching"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(f"model {args.model.name} on {device}; {args.tokens} new tokens per request, greedy\n")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        adapters = make_adapters(args.model, folder, 16)
        merged = merged_copy(args.model, adapters[0], folder)
        lora = [served(f"base:a{i}", "adapter", args.model, p) for i, p in enumerate(adapters)]
        base_model = served("base", "base", args.model, args.model)
        if args.only != "switching":
            batching_sections(args, lora, base_model)
        if args.only == "batching":
            return

        # 1. switch vs fresh load (the engine before batching: the only one that switches)
        engine = Engine(max_adapters=16, batching=False)
        engine.generate(
            lora[0], PROMPT, Sampling(temperature=0, max_new_tokens=1)
        )  # base + adapter 0 in memory
        engine.generate(lora[1], PROMPT, Sampling(temperature=0, max_new_tokens=1))
        switches = []
        for i in range(20):
            engine.generate(lora[i % 2], PROMPT, Sampling(temperature=0, max_new_tokens=1))
            switches.append(engine.timings["switch_adapter_s"])
        first_load = []
        for i in range(2, 2 + args.repeats):
            engine.generate(lora[i], PROMPT, Sampling(temperature=0, max_new_tokens=1))
            first_load.append(engine.timings["load_adapter_s"])
        fresh = [fresh_load_seconds(args.model, adapters[i % 16]) for i in range(args.repeats)]
        switch_ms = statistics.median(switches) * 1000
        print("1. getting an adapter ready for a request")
        print(
            f"   switch to a loaded adapter (set_adapter)  {switch_ms:9.3f} ms  (median of {len(switches)})"
        )
        print(
            f"   load an adapter onto the loaded base          {statistics.median(first_load) * 1000:9.1f} ms"
        )
        print(f"   load base + adapter afresh                    {statistics.median(fresh) * 1000:9.1f} ms")
        ratio = statistics.median(fresh) / statistics.median(switches)
        print(f"   → hot switch is {ratio:,.0f}x faster than a fresh load\n")

        # 2. one adapter active vs merged
        merged_model = served("base:a0:merged", "merged", args.model, merged)
        engine.generate(merged_model, PROMPT, Sampling(temperature=0, max_new_tokens=1))
        adapter_rate = decode_rate(engine, lora[0], args.tokens, args.repeats)
        merged_rate = decode_rate(engine, merged_model, args.tokens, args.repeats)
        base_rate = decode_rate(engine, base_model, args.tokens, args.repeats)
        print("2. decode speed (tokens/s after the first token, median)")
        print(f"   one adapter active (unmerged LoRA)            {adapter_rate:9.1f}")
        print(f"   the same adapter merged (plain model)         {merged_rate:9.1f}")
        print(f"   base alone (adapters disabled)                {base_rate:9.1f}")
        print(f"   → merged / adapter = {merged_rate / adapter_rate:.2f}x\n")

        # 3. adapters in use
        print(f"3. throughput with N adapters in use ({args.requests} requests cycling through them)")
        print("   N     LRU 16 (all loaded)   LRU 4")
        for n in (1, 4, 16):
            roomy = Engine(max_adapters=16, batching=False)
            tight = Engine(max_adapters=4, batching=False)
            for warm in (roomy, tight):
                warm.generate(lora[0], PROMPT, Sampling(temperature=0, max_new_tokens=1))
            for i in range(n):  # load them once (the roomy engine keeps them)
                roomy.generate(lora[i], PROMPT, Sampling(temperature=0, max_new_tokens=1))
            roomy_rate = tokens_per_second(roomy, lora[:n], args.requests, args.tokens)
            tight_rate = tokens_per_second(tight, lora[:n], args.requests, args.tokens)
            print(f"   {n:<5} {roomy_rate:10.1f} tok/s      {tight_rate:10.1f} tok/s")
            del roomy, tight

        # 4. side by side: replies on one base take turns a token at a time
        pair = [base_model, lora[0]]
        one_by_one = tokens_per_second(engine, pair, 2 * args.repeats, args.tokens)
        firsts: list[float] = []
        started = time.perf_counter()
        for _ in range(args.repeats):
            firsts += side_by_side_first_tokens(engine, pair, args.tokens)
        together = 2 * args.repeats * args.tokens / (time.perf_counter() - started)
        print("\n4. two replies at once on one base (the base alone and an adapter, as two panes)")
        print(f"   one after the other                           {one_by_one:9.1f} tok/s")
        print(f"   together, a token each in turn                {together:9.1f} tok/s")
        print(f"   → slower reply's first token after {max(firsts) * 1000:.0f} ms (worst of {len(firsts)})")


if __name__ == "__main__":
    main()
