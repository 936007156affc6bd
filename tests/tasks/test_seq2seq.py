"""SEQ_2_SEQ_LM on a tiny T5: loss only on the target tokens, a job that trains, and an adapter
that loads with AutoModelForSeq2SeqLM + PeftModel in a fresh process and generates."""

import json
from pathlib import Path

from fastapi.testclient import TestClient

from app.core import metric_names
from tests.factories import run_job
from tests.tasks.conftest import create_job, metrics, run_fresh, upload

ROWS = [
    {"instruction": f"Spell the number {i}", "input": "in words" if i % 2 else "", "output": f"number {i}"}
    for i in range(20)
]

GENERATE = """
import json, sys
import torch
from peft import PeftModel
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

base, adapter = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(base)
model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), adapter).eval()
inputs = tokenizer("Spell the number 3", return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
start = torch.tensor([[model.config.decoder_start_token_id]])
with torch.no_grad():
    tuned = model(**inputs, decoder_input_ids=start).logits
    with model.disable_adapter():
        base_logits = model(**inputs, decoder_input_ids=start).logits
changed = bool((tuned - base_logits).abs().max() > 1e-6)
print(json.dumps({"tokens": out[0].tolist(), "adapter_changes_logits": changed}))
"""


def test_labels_cover_only_the_target_and_end_in_eos(tiny_t5_dir: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq

    from worker.training.pipeline import load_tokenizer
    from worker.training.seq2seq import encode

    tokenizer = load_tokenizer(str(tiny_t5_dir))
    dataset = encode(ROWS[:2], tokenizer, max_length=64)
    assert tokenizer.decode(dataset[1]["input_ids"]) == "Spell the number 1\n\nin words"
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir)
    batch = DataCollatorForSeq2Seq(tokenizer, model=model)([dataset[0], dataset[1]])
    for labels in batch["labels"].tolist():
        scored = [token for token in labels if token != -100]
        assert scored[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(scored[:-1]) in ("number 0", "number 1")
    assert batch["decoder_input_ids"][0, 0] == model.config.decoder_start_token_id


def test_seq2seq_job_trains_and_its_adapter_generates_in_a_fresh_process(
    client: TestClient, tiny_t5: str, tiny_t5_dir: Path, configured: Path, sqlite_only: None
) -> None:
    hp = {"task_type": "SEQ_2_SEQ_LM", "target_modules": "q,k,v,o", "n_epochs": 1, "learning_rate": 1e-3}
    job_id = create_job(client, tiny_t5, upload(client, ROWS), gradient_checkpointing=True, **hp)
    status = run_job(job_id, "test-worker")
    assert status == "succeeded", client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()["error"]
    for key in (metric_names.TRAIN_LOSS, metric_names.VALID_LOSS, metric_names.TOKENS_SEEN):
        assert metrics(client, job_id, key), key

    adapter = configured / "artifacts" / "jobs" / job_id / "adapter"
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["task_type"] == "SEQ_2_SEQ_LM" and set(saved["target_modules"]) == {"q", "k", "v", "o"}
    out = run_fresh(GENERATE, str(tiny_t5_dir), str(adapter))
    assert 1 < len(out["tokens"]) <= 7  # the decoder start token, then up to 6 generated
    assert out["adapter_changes_logits"]  # the trained LoRA weights were loaded, not a zero update
