"""Continuous batching in the model server's engine, on the tiny Llama and LoRA adapters made with
random weights (so each answers differently): 16 concurrent greedy replies over the base, three
adapters and a checkpoint, in one batch, each equal to its model's answer alone (the engine before
batching, which is transformers' own ``generate``); a long prompt prefilled in chunks while others
stream; a cancelled reply leaving the others going on; choices scored between decode steps."""

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.core.catalog import ServedModel
from worker.serving.engine import Engine, Sampling

QUESTIONS = [
    "What is 3 plus 4?",
    "Name a colour.",
    "Say something long about the sea, the sky, and every boat that ever sailed between them.",
    "Hi",
]
GREEDY = Sampling(temperature=0, max_new_tokens=14)


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(
        r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[ServedModel]:
    root = tmp_path_factory.mktemp("adapters")
    now = datetime.now(UTC)
    base = ServedModel("tiny-llama", "base", "tiny-llama", str(tiny_model_dir), str(tiny_model_dir), now)
    out = [base]
    for i, (kind, name) in enumerate(
        [
            ("adapter", "tiny-llama:ftjob-a"),
            ("adapter", "tiny-llama:ftjob-b"),
            ("adapter", "tiny-llama:ftjob-c"),
            ("checkpoint", "tiny-llama:ftjob-a:ckpt-4"),
        ]
    ):
        folder = make_adapter(tiny_model_dir, root / f"a{i}", seed=i + 1)
        out.append(
            ServedModel(name, kind, "tiny-llama", str(tiny_model_dir), str(folder), now, name.split(":")[1])
        )  # type: ignore[arg-type]
    return out


def messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def test_sixteen_concurrent_replies_over_five_models_each_equal_their_solo_run(
    models: list[ServedModel],
) -> None:
    solo_engine = Engine(batching=False)
    asks = [(models[i % 5], QUESTIONS[i % 4]) for i in range(16)]
    solo = {(m.id, q): solo_engine.generate(m, messages(q), GREEDY).text for m, q in set(asks)}
    assert len(set(solo.values())) > 5  # the adapters answer differently from the base and each other

    engine = Engine(batching=True, prefill_chunk=128)
    replies: dict[int, str] = {}
    start = threading.Barrier(16)

    def ask(i: int) -> None:
        start.wait()
        model, question = asks[i]
        replies[i] = engine.generate(model, messages(question), GREEDY).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for i, (model, question) in enumerate(asks):
        assert replies[i] == solo[(model.id, question)], (model.id, question)
    batcher = engine._bases["tiny-llama"].batcher
    assert batcher is not None and batcher.peak_batch >= 8  # they shared forward passes
    assert batcher.steps < 16 * GREEDY.max_new_tokens / 4


def test_a_long_prompt_is_prefilled_in_chunks_while_the_others_stream_and_a_cancel_ends_one(
    models: list[ServedModel],
) -> None:
    engine = Engine(batching=True, prefill_chunk=16)
    long_question = " ".join(f"word{i}" for i in range(150))  # ~300 prompt tokens: ~19 chunks
    streaming = Sampling(temperature=0, max_new_tokens=60)
    pieces: dict[int, list[str]] = {i: [] for i in range(4)}
    cancels = [threading.Event() for _ in range(4)]
    results: dict[int, object] = {}

    def stream(i: int) -> None:
        def on_text(piece: str) -> None:
            pieces[i].append(piece)
            if i == 3 and len(pieces[3]) == 5:
                cancels[3].set()  # a client gone: only its reply ends

        results[i] = engine.generate(models[i], messages(QUESTIONS[i]), streaming, cancels[i], on_text)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    while min(len(p) for p in pieces.values()) < 3:  # all four streaming
        threading.Event().wait(0.01)
    before = {i: len(pieces[i]) for i in range(3)}
    long_reply = engine.generate(
        models[4], messages(long_question), Sampling(temperature=0, max_new_tokens=4)
    )
    during = {i: len(pieces[i]) - before[i] for i in range(3)}
    for thread in threads:
        thread.join(timeout=300)

    assert long_reply.prompt_tokens > 250 and long_reply.completion_tokens == 4
    # each chunk of 16 prompt tokens was followed by a decode step of the others: they kept streaming
    assert all(count >= 10 for count in during.values()), during
    assert results[3].finish_reason == "cancelled" and results[3].completion_tokens < 20  # type: ignore[attr-defined]
    solo = Engine(batching=False)
    for i in range(3):
        assert results[i].text == solo.generate(models[i], messages(QUESTIONS[i]), streaming).text  # type: ignore[attr-defined]


def test_choices_are_scored_between_decode_steps_as_each_model_alone_scores_them(
    models: list[ServedModel],
) -> None:
    choices = ["seven", "eight", "a colour"]
    solo = Engine(batching=False)
    engine = Engine(batching=True)
    busy = threading.Thread(
        target=engine.generate,
        args=(models[1], messages(QUESTIONS[2]), Sampling(temperature=0, max_new_tokens=30)),
    )
    busy.start()
    for model in models:
        scored = engine.choice_logprobs(model, messages(QUESTIONS[0]), choices)
        alone = solo.choice_logprobs(model, messages(QUESTIONS[0]), choices)
        assert [t for _, t in scored] == [t for _, t in alone]
        assert [s for s, _ in scored] == pytest.approx([s for s, _ in alone], abs=1e-4)
    busy.join(timeout=120)
