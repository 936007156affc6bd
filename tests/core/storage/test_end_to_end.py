"""A job whose worker keeps everything in an S3-compatible bucket, and a model server that serves
its adapter from there: the dataset goes up through the API, the job runs in this process on the
tiny model, nothing but the cache is left on local disk, and `tunedeck serve` (its own process,
with an empty cache) fetches the adapter from the bucket and answers with it."""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.storage import MARKER
from tests.core.storage.conftest import CREDENTIALS, S3Server, bucket_keys
from tests.e2e.support import TUNEDECK, free_port, server_process
from tests.factories import INSTRUCTION_ROWS, create_job, run_job, upload
from tests.served import NEW_TOKENS, QUESTION, reference

pytestmark = pytest.mark.slow

HYPERPARAMETERS = {"n_epochs": 3, "learning_rate": 1e-2, "save_steps": 6}
ROWS = INSTRUCTION_ROWS[:24]  # 22 training rows: 6 steps an epoch, enough to change the answer
SERVE_TOKEN = "storage-test-internal-token"


@pytest.fixture
def sqlite_only(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the storage backend does not depend on the database")


@pytest.fixture
def s3_settings(configured: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's settings switched to an S3 store on a fresh bucket; yields the bucket."""
    from app.core.config import get_settings
    from app.core.storage import _cached_client

    bucket = s3_server.new_bucket()
    monkeypatch.setenv("TUNEDECK_STORAGE", "s3")
    monkeypatch.setenv("TUNEDECK_S3_BUCKET", bucket)
    monkeypatch.setenv("TUNEDECK_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.delenv("TUNEDECK_S3_PREFIX", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    _cached_client.cache_clear()  # a client made earlier may hold other credentials
    yield bucket
    get_settings.cache_clear()
    _cached_client.cache_clear()


def test_a_job_trained_on_s3_is_served_from_s3(
    s3_settings: str,
    client: TestClient,
    tiny_model: str,
    tiny_model_dir: Path,
    configured: Path,
    s3_server: S3Server,
    sqlite_only: None,
    tmp_path: Path,
) -> None:
    bucket, data_dir = s3_settings, configured
    file_id = upload(client, ROWS)
    job_id = create_job(client, tiny_model, file_id, hp=HYPERPARAMETERS, seed=1)
    status = run_job(job_id, "test-worker")
    assert status == "succeeded", client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json()["error"]

    keys = bucket_keys(s3_server, bucket)
    adapter = f"jobs/{job_id}/adapter"
    for name in ("adapter_model.safetensors", "adapter_config.json", MARKER):
        assert f"{adapter}/{name}" in keys
    assert f"files/{file_id}/train.jsonl" in keys and f"jobs/{job_id}/checkpoints/step-6/{MARKER}" in keys
    assert not any("/staging/" in key for key in keys)
    # Nothing of the artifacts on local disk: no artifacts folder, only the (expendable) cache.
    assert not (data_dir / "artifacts").exists()
    cache = data_dir / "cache"
    assert not (cache / "s3" / bucket / "staging" / "jobs" / job_id / "staging").exists()

    downloaded = _download(s3_server, bucket, adapter, tmp_path / "from-bucket")
    shutil.rmtree(cache)  # the model server starts with nothing local: it must read the bucket

    with _serving(tmp_path / "serve.log") as url:
        answer = _chat(url, f"{tiny_model}:{job_id}")
        assert answer, "the adapter served from S3 answered with nothing"
        base_answer = _chat(url, tiny_model)
    folders = {"tiny-llama": tiny_model_dir, f"tiny-llama:{job_id}": downloaded}
    assert answer == reference(folders, f"tiny-llama:{job_id}")  # exactly the adapter in the bucket
    assert answer != base_answer  # and not the base alone
    assert list((cache / "s3" / bucket / "objects" / adapter).glob("@*/adapter_model.safetensors"))


def _download(server: S3Server, bucket: str, prefix: str, dest: Path) -> Path:
    """The adapter's objects fetched with plain boto3 (not through the store under test)."""
    s3 = server.client
    for key in bucket_keys(server, bucket):
        if key.startswith(prefix + "/") and not key.endswith(MARKER):
            target = dest / key.removeprefix(prefix + "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
    return dest


@contextmanager
def _serving(log_path: Path) -> Iterator[str]:
    """`tunedeck serve` with this test's settings (the S3 store included) as its own process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["TUNEDECK_INTERNAL_TOKEN"] = SERVE_TOKEN  # the model server asks callers for a bearer token
    with server_process([TUNEDECK, "serve", "--port", str(port)], env, log_path, url, "the model server"):
        yield url


def _chat(url: str, model: str) -> str:
    response = httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {SERVE_TOKEN}"},
        json={"model": model, "messages": QUESTION, "temperature": 0, "max_tokens": NEW_TOKENS},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])
