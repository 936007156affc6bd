"""The model server for the serving, playground and playground-browser tests: two tiny adapters
(one merged) trained in-process, then `tunedeck serve` on them as its own process; and what each
model alone answers. Built once per test process (the fixtures are session-scoped and made
visible to every test by tests/conftest.py)."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from tests.accounts import bearer, make_user
from tests.e2e.support import TUNEDECK, free_port, server_process
from tests.factories import INSTRUCTION_ROWS, create_job, upload

QUESTION = [{"role": "user", "content": "What is 3 plus 4?"}]
NEW_TOKENS = 12


@dataclass
class Served:
    url: str
    base: str
    adapters: list[str]
    checkpoint: str
    merged: str
    folders: dict[str, Path]
    env: dict[str, str]
    log: Path
    key: str = ""  # an admin's API key in the served database

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Served]:
    """Two tiny adapters (one merged) trained in this process, then `tunedeck serve` on them."""
    from app.basemodels.service import register_model
    from app.core.config import get_settings
    from app.core.db import migrate, session_scope
    from app.main import create_app
    from tests.factories import run_job
    from worker.export.merge import run_merge

    root = tmp_path_factory.mktemp("serving")
    data = root / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env.update(
        {
            "TUNEDECK_DATA_DIR": str(data),
            "DATABASE_URL": f"sqlite:///{data}/tunedeck.db",
            "TUNEDECK_QUEUE": "serving",
        }
    )
    with pytest.MonkeyPatch.context() as patch:
        for key in ("TUNEDECK_DATA_DIR", "DATABASE_URL", "TUNEDECK_QUEUE"):
            patch.setenv(key, env[key])
        patch.delenv("REDIS_URL", raising=False)
        get_settings.cache_clear()
        data.mkdir(parents=True)
        migrate()
        with session_scope() as session:
            register_model(session=session, name="tiny-llama", folder=tiny_model_dir)
        key = make_user("admin")
        with TestClient(create_app(), headers=bearer(key)) as client:
            file_id = upload(client, INSTRUCTION_ROWS)
            jobs = []
            for lr, seed in ((1e-2, 1), (5e-3, 2)):
                hp = {"n_epochs": 3, "learning_rate": lr, "save_steps": 9}
                job_id = create_job(client, "tiny-llama", file_id, hp=hp, seed=seed)
                assert run_job(job_id, "test-worker") == "succeeded"
                jobs.append(job_id)
            merge_id = client.post(f"/api/v1/fine_tuning/jobs/{jobs[0]}/merge").json()["id"]
            assert run_merge(merge_id) == "succeeded"
        get_settings.cache_clear()
    artifacts = data / "artifacts" / "jobs"
    served = Served(
        url="",
        base="tiny-llama",
        adapters=[f"tiny-llama:{j}" for j in jobs],
        checkpoint=f"tiny-llama:{jobs[1]}:ckpt-9",
        merged=f"tiny-llama:{jobs[0]}:merged",
        folders={
            f"tiny-llama:{jobs[0]}": artifacts / jobs[0] / "adapter",
            f"tiny-llama:{jobs[1]}": artifacts / jobs[1] / "adapter",
            f"tiny-llama:{jobs[1]}:ckpt-9": artifacts / jobs[1] / "checkpoints" / "step-9",
            f"tiny-llama:{jobs[0]}:merged": artifacts / jobs[0] / "merged",
            "tiny-llama": tiny_model_dir,
        },
        env={**env, "TUNEDECK_SERVE_MAX_ADAPTERS": "2"},
        log=root / "serve.log",
        key=key,
    )
    port = free_port()
    served.url = f"http://127.0.0.1:{port}"
    with server_process(
        [TUNEDECK, "serve", "--port", str(port)], served.env, served.log, served.url, "the model server"
    ):
        yield served


def reference(folders: dict[str, Path], name: str) -> str:
    """What the model alone says, greedy, loaded afresh with plain transformers (+ peft)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = folders["tiny-llama"]
    folder = folders[name]
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    path = folder if name.endswith(":merged") else base_dir
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    if name != "tiny-llama" and not name.endswith(":merged"):
        model = PeftModel.from_pretrained(model, folder).eval()
    inputs = tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        out = model.generate(
            **inputs, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    return str(tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))


@pytest.fixture(scope="session")
def references(served: Served) -> dict[str, str]:
    names = ["tiny-llama", *served.adapters, served.checkpoint, served.merged]
    return {name: reference(served.folders, name) for name in names}


def openai_client(base_url: str, api_key: str):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=120)


def ask(client, model: str) -> str:  # type: ignore[no-untyped-def]
    reply = client.chat.completions.create(
        model=model, messages=QUESTION, temperature=0, max_tokens=NEW_TOKENS
    )
    return str(reply.choices[0].message.content)


@pytest.fixture
def served_web(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The web app on the served models' database, its /v1 and batches going to that server."""
    from app.core.config import get_settings
    from app.main import create_app

    for key in ("TUNEDECK_DATA_DIR", "DATABASE_URL"):
        monkeypatch.setenv(key, served.env[key])
    monkeypatch.setenv("TUNEDECK_MODEL_SERVER_URL", served.url)
    get_settings.cache_clear()
    with TestClient(create_app(), headers=served.auth) as client:
        yield client
    get_settings.cache_clear()


def direct(served: Served, model: str, prompt: str, max_tokens: int = NEW_TOKENS) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
    }
    reply = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=120, headers=served.auth)
    return str(reply.json()["choices"][0]["message"]["content"])
