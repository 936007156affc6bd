"""A QLoRA job of the bundled SmolLM2 through a real `tunedeck run` (web, worker, model server) on
this machine's GPU: 4-bit NF4 with double quantization and bf16 compute, on the demo dataset.
Prints the device, the job's steps per second, its losses and peak memory, and a reply from the
adapter through the model server. Part of bench/gpu.sh; runs on CPU too (without 4-bit there).

    .venv/bin/python bench/gpu_job.py [--epochs 3]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.support import Instance, wait_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=420)
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"device: {device}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    with tempfile.TemporaryDirectory() as tmp:
        instance = Instance(Path(tmp) / "data", {"TUNEDECK_SERVE_PRELOAD": ""})
        instance.start(timeout=300)
        try:
            with instance.client() as client:
                demo = next(
                    f
                    for f in client.get("/api/v1/files").json()["data"]
                    if f["filename"] == "demo-lora-faq.jsonl"
                )
                hp = {
                    "n_epochs": args.epochs,
                    "batch_size": 8,
                    "learning_rate": 2e-4,
                    "logging_steps": 1,
                    "quantization": "4bit" if cuda else "none",
                    "bnb_4bit_quant_type": "nf4",
                    "bnb_4bit_use_double_quant": True,
                    "bnb_4bit_compute_dtype": "bf16" if cuda else "auto",
                }
                body = {"model": "smollm2-135m-instruct", "training_file": demo["id"], "hyperparameters": hp}
                made = client.post("/api/v1/fine_tuning/jobs", json=body)
                made.raise_for_status()
                job_id = made.json()["id"]
                url = f"/api/v1/fine_tuning/jobs/{job_id}"
                started = time.perf_counter()
                job = wait_for(
                    lambda: (
                        (j := client.get(url).json())["status"] in ("succeeded", "failed", "cancelled") and j
                    ),
                    timeout=args.timeout,
                    interval=1,
                    message="the QLoRA job",
                )
                took = time.perf_counter() - started
                print(f"job {job_id}: {job['status']} in {took:.1f} s (queued to done)")
                if job["status"] != "succeeded":
                    print(f"error: {job['error']}")
                    sys.exit(1)
                points = client.get(url + "/metrics", params={"limit": 10000}).json()["data"]
                steps = [p for p in points if p["key"] == "train_loss"]
                memory = [p["value"] for p in points if p["key"] == "memory_gib"]
                step_times = [p["value"] for p in points if p["key"] == "step_time"]
                speed = [p["value"] for p in points if p["key"] == "tokens_per_second"]
                first, last = steps[0]["value"], job["train_loss"]
                print(f"  steps {job['progress']['step']}, train loss {first:.3f} -> {last:.3f}")
                print(f"  valid loss {job['valid_loss']}")
                if step_times:
                    ordered = sorted(step_times)
                    print(
                        f"  step time: median {ordered[len(ordered) // 2]:.3f} s over {len(ordered)} points"
                    )
                if speed:
                    print(f"  trained tokens/s: median {sorted(speed)[len(speed) // 2]:.0f}")
                if memory:
                    print(f"  peak memory: {max(memory):.2f} GiB ({'GPU' if cuda else 'process'})")
                reply = client.post(
                    "/v1/chat/completions",
                    json={
                        "model": job["fine_tuned_model"],
                        "messages": [{"role": "user", "content": "What is LoRA?"}],
                        "max_tokens": 48,
                        "temperature": 0,
                    },
                ).json()
                print(f"  the adapter says: {reply['choices'][0]['message']['content'][:200]!r}")
        finally:
            instance.stop()


if __name__ == "__main__":
    main()
