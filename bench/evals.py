"""Evaluation throughput, measured in one run:

1. grading cost per 1,000 items for each grader that runs here (string_check and every
   text_similarity metric), on answer/reference pairs of a realistic length;
2. an eval of N items × 2 models (SmolLM2-135M-Instruct and a LoRA adapter on it), end to end
   through the real path: the web app's API makes the runs, the worker's eval runner answers them
   on a real `tunedeck serve` and grades them; items per second, and the share of the time spent
   in generation (the model server's answers) against grading and bookkeeping.

    .venv/bin/python bench/evals.py                    # 100 items, 32 new tokens
    .venv/bin/python bench/evals.py --items 20 --tokens 16

Needs the bundled SmolLM2 converted once (`make run` does it, or `tunedeck bootstrap`).
"""

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import TUNEDECK  # noqa: E402

TEXT = (
    "the model answers each question with a short sentence that names the capital city of the "
    "country and sometimes adds a little more about its history people language and food"
)
WORDS = TEXT.split(" ")


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def grading_costs(pairs: int = 1000) -> None:
    from app.core.evaltemplates import METRICS
    from worker.evals.run import _string_check
    from worker.evals.similarity import similarity

    rng = random.Random(0)
    data = [(sentence(rng, 24), sentence(rng, 20)) for _ in range(pairs)]
    print(f"1. grading {pairs} answer/reference pairs (~24 and ~20 words), seconds per 1,000 items")
    for metric in ("string_check", *METRICS):
        similarity(metric, "warm up", "warm up") if metric != "string_check" else None
        started = time.perf_counter()
        for output, reference in data:
            if metric == "string_check":
                criterion = {"input": "{{sample.output_text}}", "reference": reference, "operation": "ilike"}
                _string_check(criterion, {"sample": {"output_text": output}})
            else:
                similarity(metric, output, reference)
        took = time.perf_counter() - started
        print(f"   {metric:<13} {took * 1000 / pairs:8.3f} s   ({pairs / took:9.0f} items/s)")


def end_to_end(items: int, tokens: int) -> None:
    import httpx
    from fastapi.testclient import TestClient

    folder = Path(tempfile.mkdtemp(prefix="tunedeck-bench-evals-"))
    data = folder / "data"
    os.environ.update(
        {
            "TUNEDECK_DATA_DIR": str(data),
            "DATABASE_URL": f"sqlite:///{data}/tunedeck.db",
            "TUNEDECK_QUEUE": "bench",
        }
    )
    os.environ.pop("REDIS_URL", None)
    data.mkdir(parents=True)
    from app.auth.service import create_api_key, create_user
    from app.basemodels.service import register_model
    from app.core.config import get_settings
    from app.core.credentials import internal_token
    from app.core.db import migrate, session_scope
    from app.core.ids import new_id
    from app.core.tables import Job, JobStatus, Role
    from app.main import create_app
    from bench.serving import make_adapters
    from worker.evals import run as runner

    base_dir = get_settings().model_cache_dir / "smollm2-135m-instruct"
    if not base_dir.exists():
        raise SystemExit(f"{base_dir} is missing: run `tunedeck bootstrap` (or `make run`) once first")
    migrate()
    job_id = new_id("ftjob")
    [adapter] = make_adapters(base_dir, folder, 1)
    target = data / "artifacts" / "jobs" / job_id / "adapter"
    target.parent.mkdir(parents=True)
    adapter.rename(target)
    with session_scope() as session:
        register_model(session=session, name="smollm2", folder=base_dir)
        session.add(
            Job(
                id=job_id,
                model="smollm2",
                training_file="file-x",
                status=JobStatus.succeeded,
                adapter_key=f"jobs/{job_id}/adapter",
            )
        )
        user = create_user(session=session, username="bench", password="bench-password-1", role=Role.admin)
        _, key = create_api_key(session=session, user=user, name="bench")
    models = ["smollm2", f"smollm2:{job_id}"]
    port = 8931
    os.environ["TUNEDECK_MODEL_SERVER_URL"] = f"http://127.0.0.1:{port}"
    get_settings.cache_clear()
    import subprocess

    log = open(folder / "serve.log", "wb")  # noqa: SIM115  (closed with the process)
    server = subprocess.Popen([TUNEDECK, "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        rng = random.Random(1)
        content = [
            {
                "item": {
                    "question": f"In one sentence: what is the capital of country number {i}?",
                    "answer": sentence(rng, 12),
                }
            }
            for i in range(items)
        ]
        criteria = [
            {
                "type": "string_check",
                "name": "mentions",
                "input": "{{sample.output_text}}",
                "reference": "capital",
                "operation": "ilike",
            },
            {
                "type": "text_similarity",
                "name": "bleu",
                "input": "{{sample.output_text}}",
                "reference": "{{item.answer}}",
                "evaluation_metric": "bleu",
                "pass_threshold": 0.1,
            },
            {
                "type": "text_similarity",
                "name": "rouge",
                "input": "{{sample.output_text}}",
                "reference": "{{item.answer}}",
                "evaluation_metric": "rouge_l",
                "pass_threshold": 0.2,
            },
        ]
        schema = {
            "type": "object",
            "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
        }
        with TestClient(create_app(), headers={"authorization": f"Bearer {key}"}) as web:
            eval_id = web.post(
                "/api/v1/evals",
                json={
                    "data_source_config": {"type": "custom", "item_schema": schema},
                    "testing_criteria": criteria,
                },
            ).json()["id"]
            warm = {"model": models[1], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            for model in models:  # load both once, so neither run pays for loading
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json={**warm, "model": model},
                    headers={"authorization": f"Bearer {internal_token()}"},
                    timeout=300,
                )
            generation = 0.0
            original_chat = runner.chat

            def timed_chat(*args, **kwargs):  # type: ignore[no-untyped-def]
                nonlocal generation
                started = time.perf_counter()
                try:
                    return original_chat(*args, **kwargs)
                finally:
                    generation += time.perf_counter() - started

            runner.chat = timed_chat  # type: ignore[assignment]
            started = time.perf_counter()
            for model in models:
                body = {
                    "data_source": {
                        "type": "completions",
                        "model": model,
                        "source": {"type": "file_content", "content": content},
                        "input_messages": {
                            "type": "template",
                            "template": [{"role": "user", "content": "{{item.question}}"}],
                        },
                        "sampling_params": {"temperature": 0, "max_completion_tokens": tokens},
                    }
                }
                run_id = web.post(f"/api/v1/evals/{eval_id}/runs", json=body).json()["id"]
                assert runner.run_eval(run_id) == "completed"
            took = time.perf_counter() - started
        total = items * len(models)
        # generation time is summed over the concurrent requests: divide by the concurrency for wall time
        wall_generation = generation / runner.CONCURRENCY
        print(
            f"\n2. {items} items × {len(models)} models, {tokens} new tokens each, "
            f"{runner.CONCURRENCY} items at once"
        )
        print(f"   {total} items in {took:.1f} s: {total / took:.2f} items/s")
        print(
            "   generation (model server answers): "
            f"~{100 * min(1.0, wall_generation / took):.0f}% of the time "
            f"({generation:.1f} s of request time over {runner.CONCURRENCY} concurrent requests)"
        )
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    grading_costs()
    end_to_end(args.items, args.tokens)


if __name__ == "__main__":
    main()
