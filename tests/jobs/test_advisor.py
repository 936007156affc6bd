"""The advisor: target modules checked against the real model at submission, the seed's pitfalls
as warnings that don't block, errors that do, and estimates that match peft's own count."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from app.basemodels.inspect import inspect_model
from app.core.db import read_session
from app.core.spec import TrainingSpec
from app.core.tables import Job
from app.jobs.advisor import trainable_parameters
from tests import factories
from tests.factories import instruction_rows
from tests.tiny_model import build_tiny_bert, build_tiny_gpt2


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tiny_model_dir)


def upload(client: TestClient, n: int = 40, **form: str) -> str:
    return factories.upload(client, instruction_rows(n, "Question number {i}?"), **form)


def advice(client: TestClient, model: str, file_id: str, **hp: object) -> dict:  # type: ignore[type-arg]
    body = {"model": model, "training_file": file_id, "hyperparameters": hp}
    response = client.post("/api/v1/fine_tuning/jobs/advice", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def register(name: str, folder: Path) -> None:
    from app.basemodels.service import register_model
    from app.core.db import session_scope

    with session_scope() as session:
        register_model(session=session, name=name, folder=folder)


def test_unknown_target_modules_are_refused_listing_the_models_linear_layers(
    client: TestClient, tiny_model: str
) -> None:
    file_id = upload(client)
    body = {
        "model": tiny_model,
        "training_file": file_id,
        "hyperparameters": {"target_modules": "q_proj,c_attn"},
    }
    response = client.post("/api/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unknown_target_modules" and error["param"] == "target_modules"
    assert "['c_attn']" in error["message"]
    assert "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in error["message"]
    with read_session() as session:
        assert session.exec(select(Job)).all() == []  # nothing stored


def test_gpt2_and_bert_module_names_work(
    client: TestClient, configured: Path, tiny_gpt2_dir: Path, tiny_bert_dir: Path, tiny_model: str
) -> None:
    register("tiny-gpt2", tiny_gpt2_dir)
    register("tiny-bert", tiny_bert_dir)
    file_id = upload(client)
    assert not advice(client, "tiny-gpt2", file_id, target_modules="c_attn")["blocked"]
    llama_names = advice(client, "tiny-gpt2", file_id)  # the default preset names Llama's layers
    assert llama_names["blocked"] and "c_attn, c_fc, c_proj" in llama_names["checks"][0]["message"]
    assert not advice(client, "tiny-bert", file_id, target_modules="query,key,value")["blocked"]
    assert not advice(client, tiny_model, file_id, target_modules="all-linear")["blocked"]


def test_layers_and_modules_to_save_are_checked_too(client: TestClient, tiny_model: str) -> None:
    file_id = upload(client)
    codes = [c["code"] for c in advice(client, tiny_model, file_id, layers_to_transform="0,5")["checks"]]
    assert "invalid_layers" in codes
    codes = [c["code"] for c in advice(client, tiny_model, file_id, modules_to_save="classifier")["checks"]]
    assert "unknown_modules_to_save" in codes
    assert not advice(client, tiny_model, file_id, layers_to_transform="last 1")["blocked"]


def test_the_seeds_pitfalls_warn_with_what_to_change(client: TestClient, tiny_model: str) -> None:
    no_validation = upload(client, validation_split="0")
    result = advice(
        client,
        tiny_model,
        no_validation,
        learning_rate=1e-5,
        r=128,
        lora_alpha=64,
        lora_dropout=0.0,
        max_seq_length=24,
        batch_size=2,
    )
    checks = {c["code"]: c for c in result["checks"]}
    assert not result["blocked"] and all(c["level"] != "error" for c in checks.values())
    assert "5e-5…3e-4" in checks["learning_rate_too_low"]["message"]
    assert "alpha/r" in checks["alpha_below_r"]["message"]
    assert "8–32" in checks["r_too_large"]["message"]
    assert "9:1" in checks["no_validation"]["message"]
    assert "0.1–0.2" in checks["no_dropout_small_data"]["message"]
    assert checks["rows_truncated"]["message"].startswith("40 of 40 rows are longer than max_seq_length 24")
    clean = advice(client, tiny_model, upload(client, n=400), max_seq_length=512)
    assert clean["checks"] == []


def test_warnings_are_recorded_on_the_job_but_errors_block(client: TestClient, tiny_model: str) -> None:
    file_id = upload(client, validation_split="0")
    body = {
        "model": tiny_model,
        "training_file": file_id,
        "hyperparameters": {"learning_rate": 1e-6, "max_seq_length": 512},
    }
    job = client.post("/api/v1/fine_tuning/jobs", json=body).json()
    assert {a["code"] for a in job["advice"]} >= {"learning_rate_too_low", "no_validation"}


def test_estimates(client: TestClient, tiny_model: str, tiny_model_dir: Path) -> None:
    file_id = upload(client, n=100)  # 90 train rows
    result = advice(
        client,
        tiny_model,
        file_id,
        batch_size=4,
        gradient_accumulation_steps=2,
        n_epochs=3,
        max_seq_length=512,
    )
    estimates = result["estimates"]
    assert estimates["steps"] == 12 * 3  # ceil(90 / 8) updates per epoch
    assert estimates["tokens"] > 90 * 3 * 20
    assert estimates["seconds"] is None and "speed is unknown" in estimates["seconds_basis"]
    memory = estimates["memory_bytes"]
    parts = {k: v for k, v in memory.items() if not k.startswith("total")}
    assert memory["total"] == sum(parts.values()) > 0
    # gradient_checkpointing auto: the budget the worker falls back to where room is short
    assert 0 < memory["total_checkpointed"] < memory["total"]
    hp = {"batch_size": 4, "gradient_accumulation_steps": 2, "n_epochs": 3, "max_seq_length": 512}
    on = advice(client, tiny_model, file_id, gradient_checkpointing=True, **hp)["estimates"]
    assert (
        on["memory_bytes"]["total"] == memory["total_checkpointed"]
        and "total_checkpointed" not in on["memory_bytes"]
    )
    four_bit = advice(client, tiny_model, file_id, quantization="4bit", max_seq_length=512)["estimates"][
        "memory_bytes"
    ]
    assert four_bit["weights"] < memory["weights"]


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"target_modules": "all-linear", "r": 4},
        {"target_modules": "attention+mlp", "r": 16, "layers_to_transform": "last 1"},
        {"use_dora": True},
        {"bias": "all", "target_modules": "q_proj,v_proj"},
    ],
    ids=["seed", "all-linear", "last-layer", "dora", "bias-all"],
)
def test_trainable_parameter_estimate_matches_peft(tiny_model_dir: Path, spec: dict[str, object]) -> None:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from worker.training.pipeline import lora_config

    training_spec = TrainingSpec.model_validate(spec)
    info = inspect_model(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, lora_config(training_spec, num_layers=info.num_layers))
    assert trainable_parameters(training_spec, info) == peft_model.get_nb_trainable_parameters()


def test_gpt2_bias_lora_only_estimate_matches_peft(tiny_gpt2_dir: Path) -> None:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from worker.training.pipeline import lora_config

    spec = TrainingSpec(target_modules="c_attn", bias="lora_only")
    info = inspect_model(tiny_gpt2_dir)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir), lora_config(spec, num_layers=2)
    )
    assert trainable_parameters(spec, info) == peft_model.get_nb_trainable_parameters()


def test_the_form_shows_the_advisor_live(client: TestClient, tiny_model: str) -> None:
    file_id = upload(client, n=40)
    form = {
        "model": tiny_model,
        "training_file": file_id,
        "r": "128",
        "lora_alpha": "8",
        "learning_rate": "0.00001",
        "target_modules": "attention",
        "max_seq_length": "512",
    }
    page = client.post("/jobs/new/advice", data=form).text
    assert 'id="advice"' in page and "5e-5…3e-4" in page and "alpha/r" in page
    assert "Trainable parameters" in page and "Peak memory" in page
    blocked = client.post("/jobs/new/advice", data={**form, "target_modules": "c_attn"}).text
    assert "match no linear layer of tiny-llama" in blocked


def test_a_tokenizer_without_pad_token_is_noted_and_fixed(
    client: TestClient, configured: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "no-pad"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    model_config = json.loads((folder / "config.json").read_text())
    model_config.pop("pad_token_id", None)
    (folder / "config.json").write_text(json.dumps(model_config))
    register("no-pad", folder)
    checks = advice(client, "no-pad", upload(client), max_seq_length=512)["checks"]
    assert {
        "level": "info",
        "code": "pad_token_added",
        "field": None,
        "message": "the tokenizer has no pad token; tunedeck pads with eos automatically",
    } in checks
