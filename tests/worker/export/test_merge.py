"""Merge as a worker task: progress, safetensors + tokenizer, and the adapter folder and the merged
folder each load in a fresh process with plain transformers / peft and give the same outputs."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import INSTRUCTION_ROWS, create_job, events, run_job, upload
from worker.export.merge import run_merge

COMPARE = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
base_dir, adapter_dir, merged_dir = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(merged_dir)
ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 3?"}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)
with torch.no_grad():
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    base_logits = base(**ids).logits
    adapted = PeftModel.from_pretrained(base, adapter_dir).eval()(**ids).logits
    merged_model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    merged = merged_model(**ids).logits
print(json.dumps({"adapter_vs_merged": (adapted - merged).abs().max().item(),
                  "adapter_vs_base": (adapted - base_logits).abs().max().item(),
                  "quantized": hasattr(merged_model.config, "quantization_config")}))
"""


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_merge_matches_the_adapter_in_fresh_processes(
    client: TestClient,
    tiny_model: str,
    tiny_model_dir: Path,
    configured: Path,
    tmp_path: Path,
    sqlite_only: None,
    quantization: str,
) -> None:
    hp = {"n_epochs": 2, "learning_rate": 5e-3, "quantization": quantization}
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS[:16]), hp=hp)
    assert run_job(job_id, "test-worker") == "succeeded"
    assert client.get(f"/api/v1/fine_tuning/jobs/{job_id}/merge").status_code == 404
    merge = client.post(f"/api/v1/fine_tuning/jobs/{job_id}/merge").json()
    assert merge["status"] == "queued" and merge["download_url"] is None
    assert client.post(f"/api/v1/fine_tuning/jobs/{job_id}/merge").json()["id"] == merge["id"]  # idempotent
    assert run_merge(merge["id"]) == "succeeded"
    done = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/merge").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    progress = [m for m in events(client, job_id) if m.startswith("Merge ") and "%" in m]
    assert [m.split("%")[0] for m in progress] == ["Merge 10", "Merge 40", "Merge 60", "Merge 80", "Merge 95"]

    archive = zipfile.ZipFile(io.BytesIO(client.get(done["download_url"]).content))
    names = set(archive.namelist())
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    merged_dir = tmp_path / "merged"
    archive.extractall(merged_dir)
    adapter_dir = tmp_path / "adapter"
    zipfile.ZipFile(io.BytesIO(client.get(f"/api/v1/fine_tuning/jobs/{job_id}/adapter").content)).extractall(
        adapter_dir
    )

    out = subprocess.run(
        [sys.executable, "-c", COMPARE, str(tiny_model_dir), str(adapter_dir), str(merged_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["adapter_vs_base"] > 1e-3  # the adapter changed the model …
    assert result["adapter_vs_merged"] < 1e-4  # … and the merged model is the same function
    assert result["quantized"] is False  # a 4-bit job merges into the unquantized base
    models = {m["id"]: m["kind"] for m in client.get("/api/v1/models").json()["data"]}
    assert models[f"tiny-llama:{job_id}:merged"] == "merged"


def test_merge_needs_a_finished_adapter(client: TestClient, tiny_model: str) -> None:
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS[:16]))
    response = client.post(f"/api/v1/fine_tuning/jobs/{job_id}/merge")
    assert response.status_code == 409 and "no adapter to merge" in response.json()["error"]["message"]
