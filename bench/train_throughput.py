"""Training throughput, side by side in one run: the seed recipe as written vs trl's SFTTrainer
defaults vs tunedeck's pipeline, on the same data, model and hyperparameters.

    .venv/bin/python bench/train_throughput.py                 # SmolLM2-135M on CPU, 64 rows
    .venv/bin/python bench/train_throughput.py --rows 128 --model /path/to/local/model
    .venv/bin/python bench/train_throughput.py --rows-file alpaca.jsonl   # real rows' lengths

Rows are a synthetic log-normal length mix by default; ``--rows-file`` reads instruction rows
(``instruction``, ``input``, ``output``, as alpaca publishes them; or ``messages``) and takes the
first ``--rows`` + ``--eval-rows`` of them.

(a) seed recipe as written: every row padded to max_length 1024, loss on the whole text;
(b) SFTTrainer with its defaults: prompt-completion rows, random batches padded to the longest;
(c) tunedeck: worker.training.pipeline's SFTConfig (length-grouped batches, no padding to
    max_length, loss on completions only).
Each variant runs in its own process (clean peak-memory figures), trains one epoch on the same
rows, then every model is scored by the same evaluation (completion-token loss on held-out rows).
On CUDA the same variants run the GPU path (4-bit NF4, bf16) and the model used is printed.
"""

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "a": "seed recipe as written (pad to 1024)",
    "b": "SFTTrainer defaults",
    "c": "tunedeck pipeline",
    "d": "tunedeck pipeline, padding-free batches",
}
HYPER = {"learning_rate": 2e-4, "batch_size": 8, "gradient_accumulation_steps": 1, "r": 8, "lora_alpha": 8}
MAX_LENGTH = 1024


def default_model() -> Path:
    from app.core.config import get_settings

    return get_settings().model_cache_dir / "smollm2-135m-instruct"


# ---------------------------------------------------------------------------------------------
# data: a realistic length mix (mean ≈ 170, p90 ≈ 380, max ≈ 720 tokens after the chat template)


def target_lengths(n: int, seed: int) -> list[int]:
    """Log-normal lengths with median 93 and sigma 1.1 (mean ≈ 170, p90 ≈ 380), clipped to 720."""
    rng = random.Random(seed)
    return [int(min(720, max(40, rng.lognormvariate(math.log(93), 1.1)))) for _ in range(n)]


def make_rows(n: int, seed: int, tokenizer: Any) -> list[dict[str, str]]:
    """Instruction rows built from the demo dataset's sentences to hit each target length."""
    sentences = [
        json.loads(line)["output"] for line in (ROOT / "app/demo/demo_dataset.jsonl").read_text().splitlines()
    ]
    rng = random.Random(seed)
    rows = []
    for length in target_lengths(n, seed):
        prompt_tokens = max(8, length // 4)
        text: list[str] = []
        while len(tokenizer(" ".join(text))["input_ids"]) < length - 35:
            text.append(rng.choice(sentences))
        words = " ".join(text).split()
        cut = max(3, len(words) * prompt_tokens // length)
        rows.append(
            {
                "instruction": "Continue these notes about LoRA fine-tuning.",
                "input": " ".join(words[:cut]),
                "output": " ".join(words[cut:]),
            }
        )
    return rows


def read_rows(path: Path, n: int) -> list[dict[str, str]]:
    """The first ``n`` usable rows of a JSONL of instruction rows (alpaca's fields, or one user and
    one assistant message), as instruction / input / output."""
    rows: list[dict[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if len(rows) == n:
            break
        if not line.strip():
            continue
        row = json.loads(line)
        if "messages" in row:
            users = [m["content"] for m in row["messages"] if m.get("role") == "user"]
            answers = [m["content"] for m in row["messages"] if m.get("role") == "assistant"]
            if users and answers:
                rows.append({"instruction": users[0], "input": "", "output": answers[-1]})
        elif row.get("instruction") and row.get("output"):
            rows.append(
                {"instruction": row["instruction"], "input": row.get("input") or "", "output": row["output"]}
            )
    if len(rows) < n:
        sys.exit(f"{path} has {len(rows)} usable rows; {n} are needed (--rows + --eval-rows)")
    return rows


# ---------------------------------------------------------------------------------------------
# one variant, in its own process


def run_variant(variant: str, data_path: Path, model_path: str) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from app.core.spec import TrainingSpec
    from worker.training.data import to_prompt_completion
    from worker.training.pipeline import (
        TunedeckSFTTrainer,
        load_model,
        load_tokenizer,
        lora_config,
        pick_device,
        resolve_checkpointing,
        sft_config,
    )

    data = json.loads(data_path.read_text())
    train_rows, eval_rows = data["train"], data["eval"]
    cuda = torch.cuda.is_available()
    spec = TrainingSpec(
        **HYPER,
        n_epochs=1,
        max_seq_length=MAX_LENGTH,
        quantization="4bit" if cuda else "none",
        logging_steps=1000,
    )
    if variant in (
        "c",
        "d",
    ):  # gradient_checkpointing auto, made on or off for this machine as the worker does
        spec = resolve_checkpointing(spec, model_path)
    else:  # as before auto: (a) the seed's gradient checkpointing, (b) the 4-bit preparation's
        spec = spec.model_copy(update={"gradient_checkpointing": True})
    device = pick_device("auto")
    tokenizer = load_tokenizer(model_path)
    model = load_model(model_path, spec, device)
    peft_config = lora_config(spec, num_layers=model.config.num_hidden_layers)
    out = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-"))
    common = {
        "output_dir": str(out),
        "per_device_train_batch_size": spec.batch_size,
        "learning_rate": spec.learning_rate,
        "num_train_epochs": 1,
        "max_length": MAX_LENGTH,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "logging_steps": 1000,
        "seed": 1,
        "data_seed": 1,
        "use_cpu": not cuda,
        "bf16": device.dtype == torch.bfloat16,
        "weight_decay": spec.weight_decay,
        "warmup_steps": spec.warmup_ratio,
    }
    if variant == "a":  # the seed: one "text" field, padded to max_length, loss on every token
        texts = [
            tokenizer.apply_chat_template(
                to_prompt_completion(r)["prompt"] + to_prompt_completion(r)["completion"], tokenize=False
            )
            for r in train_rows
        ]
        dataset = Dataset.from_list([{"text": t} for t in texts])
        args = SFTConfig(**common, dataset_text_field="text", pad_to_multiple_of=MAX_LENGTH)
    elif variant == "b":
        dataset = Dataset.from_list([to_prompt_completion(r) for r in train_rows])
        args = SFTConfig(**common)
    else:
        dataset = Dataset.from_list([to_prompt_completion(r) for r in train_rows])
        args = sft_config(spec, output_dir=out, device=device, seed=1, has_eval=False)
        args.save_strategy, args.logging_steps = "no", 1000
    trainer_class = (
        TunedeckSFTTrainer if variant in ("c", "d") else SFTTrainer
    )  # (c): length-bucketed batches
    extra = {"padding_free": device.varlen_attention or variant == "d"} if variant in ("c", "d") else {}
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        **extra,
    )
    real_tokens = sum(min(len(ids), MAX_LENGTH) for ids in trainer.train_dataset["input_ids"])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated()
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "variant": variant,
        "seconds": seconds,
        "real_tokens": real_tokens,
        "tokens_per_s": real_tokens / seconds,
        "peak_bytes": peak,
        "eval_loss": completion_loss(trainer.model, tokenizer, eval_rows),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "steps": trainer.state.global_step,
    }


def completion_loss(model: Any, tokenizer: Any, rows: list[dict[str, str]]) -> float:
    """The same yardstick for every variant: mean loss over completion tokens, one row at a time."""
    import torch

    from worker.training.data import to_prompt_completion

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            pc = to_prompt_completion(row)
            prompt_ids = tokenizer.apply_chat_template(
                pc["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
            full_ids = tokenizer.apply_chat_template(
                pc["prompt"] + pc["completion"], tokenize=True, return_dict=True
            )["input_ids"]
            ids = torch.tensor([full_ids[:MAX_LENGTH]], device=model.device)
            labels = ids.clone()
            labels[:, : len(prompt_ids)] = -100
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids, labels=labels).loss) * n
            count += n
    return total / count


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=64, help="training rows (one epoch)")
    parser.add_argument("--eval-rows", type=int, default=24)
    parser.add_argument("--model", default=None, help="a local model folder (default: the converted SmolLM2)")
    parser.add_argument("--variants", default="a,b,c")
    parser.add_argument(
        "--rows-file", default=None, help="a JSONL of instruction rows to train on (real lengths)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = args.model or str(default_model())
    if args.worker:
        print("RESULT " + json.dumps(run_variant(args.worker, Path(args.data), model)))
        return

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if args.rows_file:
        rows = read_rows(Path(args.rows_file), args.rows + args.eval_rows)
    else:
        rows = make_rows(args.rows + args.eval_rows, seed=7, tokenizer=tokenizer)
    lengths = sorted(
        len(
            tokenizer.apply_chat_template(
                [
                    {"role": "user", "content": f"{r['instruction']}\n\n{r['input']}"},
                    {"role": "assistant", "content": r["output"]},
                ],
                tokenize=True,
            )["input_ids"]
        )
        for r in rows
    )
    print(f"model: {model}")
    print(
        f"data: {args.rows} training rows, {args.eval_rows} held out; tokens after the chat template: "
        f"mean {sum(lengths) / len(lengths):.0f}, p90 {lengths[int(0.9 * len(lengths))]}, max {lengths[-1]}"
    )
    print(f"hyperparameters (all variants): {HYPER}, 1 epoch, max_length {MAX_LENGTH}\n")
    data = Path(tempfile.mkdtemp()) / "rows.json"
    data.write_text(json.dumps({"train": rows[: args.rows], "eval": rows[args.rows :]}))
    results = {}
    for variant in args.variants.split(","):
        cmd = [sys.executable, __file__, "--worker", variant, "--data", str(data), "--model", model]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
        results[variant] = json.loads(line.removeprefix("RESULT "))
        r = results[variant]
        print(
            f"({variant}) {VARIANTS[variant]:<38} {r['tokens_per_s']:8.1f} real tok/s  "
            f"{r['seconds']:7.1f} s  "
            f"peak {r['peak_bytes'] / 2**30:5.2f} GiB  eval loss {r['eval_loss']:.4f}  "
            f"[{r['device']}, {r['steps']} steps]",
            flush=True,
        )
    if {"a", "b", "c"} <= results.keys():
        c = results["c"]
        print()
        for ref, target in (("a", 5.0), ("b", 1.5)):
            ratio = c["tokens_per_s"] / results[ref]["tokens_per_s"]
            loss_gap = abs(c["eval_loss"] - results[ref]["eval_loss"]) / results[ref]["eval_loss"]
            verdict = "meets" if ratio >= target and loss_gap <= 0.02 else "MISSES"
            print(
                f"(c)/({ref}) throughput {ratio:5.2f}x (target ≥ {target}x), eval loss differs by "
                f"{100 * loss_gap:.2f}% (target ≤ 2%): {verdict}"
            )


if __name__ == "__main__":
    main()
