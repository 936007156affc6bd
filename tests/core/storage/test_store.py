"""Both artifact store backends behind one interface: files, whole-folder atomic writes, zips and
key checks on the local directory and on a real S3-compatible server (moto, its own process);
then what only S3 needs: half-uploaded folders stay invisible and other hosts' changes are seen."""

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from app.core.storage import (
    MARKER,
    ArtifactKeyError,
    ArtifactStore,
    FolderReplaced,
    LocalArtifactStore,
    S3ArtifactStore,
    S3Location,
    get_store,
)
from tests.core.storage.conftest import REGION, S3Server

BAD_KEYS = ["../outside", "/etc/passwd", "files/../../outside", "", "files\\x", "files/./../.."]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    s3: S3ArtifactStore = request.getfixturevalue("s3_store")
    return s3


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def test_files_round_trip(store: ArtifactStore) -> None:
    key = "files/file-1/train.jsonl"
    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.read_bytes(key)
    store.write_bytes(key, b'{"a": 1}\n')
    assert store.exists(key) and store.read_bytes(key) == b'{"a": 1}\n'
    assert store.local_path(key).read_bytes() == b'{"a": 1}\n'
    store.write_bytes(key, b"second\n")  # overwritten whole; the local copy follows
    assert store.read_bytes(key) == b"second\n" and store.local_path(key).read_bytes() == b"second\n"
    store.delete(key)
    store.delete(key)  # no error when absent
    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.local_path(key)


def test_new_folder_replaces_the_whole_folder(store: ArtifactStore) -> None:
    key = "jobs/ftjob-1/adapter"
    first = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"w1" * 1000, "sub/extra.txt": b"x"}
    with store.new_folder(key) as folder:
        _write(folder, first)
    assert store.exists(key) and _tree(store.local_path(key)) == first

    second = {"adapter_config.json": b'{"r": 8}', "README.md": b"# adapter"}
    with store.new_folder(key) as folder:
        _write(folder, second)
    assert _tree(store.local_path(key)) == second  # no file of the first version is left
    if isinstance(store, S3ArtifactStore):
        keys = bucket_keys_of(store)
        assert keys == sorted(f"team/{key}/{name}" for name in [*second, MARKER])


def test_a_failed_write_leaves_nothing_and_keeps_the_old_folder(store: ArtifactStore) -> None:
    key = "jobs/ftjob-2/merged"
    with pytest.raises(RuntimeError), store.new_folder(key) as folder:
        _write(folder, {"model.safetensors": b"half"})
        raise RuntimeError("killed mid-save")
    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.local_path(key)
    if isinstance(store, S3ArtifactStore):
        assert bucket_keys_of(store) == []

    with store.new_folder(key) as folder:
        _write(folder, {"model.safetensors": b"good"})
    with pytest.raises(RuntimeError), store.new_folder(key) as folder:
        _write(folder, {"model.safetensors": b"bad"})
        raise RuntimeError("killed mid-save")
    assert _tree(store.local_path(key)) == {"model.safetensors": b"good"}
    assert _leftovers(store) == []  # no temporary folder stays behind


def test_publish_folder_moves_a_staged_folder_in(store: ArtifactStore) -> None:
    staged = store.staging_dir("jobs/ftjob-3/staging") / "checkpoint-3"
    _write(staged, {"trainer_state.json": b"{}", "adapter_model.safetensors": b"ckpt"})
    store.publish_folder(staged, "jobs/ftjob-3/checkpoints/step-3")
    assert not staged.exists()
    folder = store.local_path("jobs/ftjob-3/checkpoints/step-3")
    assert _tree(folder) == {"trainer_state.json": b"{}", "adapter_model.safetensors": b"ckpt"}
    store.delete("jobs/ftjob-3/staging")
    assert not store.staging_dir("jobs/ftjob-3/staging").exists()


def test_iter_zip_streams_the_safe_top_level_files(store: ArtifactStore) -> None:
    weights = os.urandom(3 * 2**20 + 17)
    files = {
        "adapter_model.safetensors": weights,
        "adapter_config.json": b'{"r": 8}',
        "training_args.bin": b"pickle",
        "nested/other.json": b"{}",
    }
    with store.new_folder("jobs/ftjob-4/adapter") as folder:
        _write(folder, files)
    chunks = list(store.iter_zip("jobs/ftjob-4/adapter", chunk_size=1 << 20))
    assert len(chunks) > 3  # streamed, not built whole in memory
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert sorted(archive.namelist()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert archive.read("adapter_model.safetensors") == weights
    assert archive.read("adapter_config.json") == b'{"r": 8}'
    with pytest.raises(FileNotFoundError):
        list(store.iter_zip("jobs/ftjob-missing/adapter"))


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_escape_are_refused(store: ArtifactStore, key: str) -> None:
    calls = [
        lambda: store.write_bytes(key, b"x"),
        lambda: store.read_bytes(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.local_path(key),
        lambda: store.staging_dir(key),
        lambda: store.new_folder(key).__enter__(),
    ]
    for call in calls:
        with pytest.raises(ArtifactKeyError):
            call()


def test_deleting_a_job_removes_its_folders_only(store: ArtifactStore) -> None:
    for key in ("jobs/ftjob-5/adapter", "jobs/ftjob-5/checkpoints/step-2", "jobs/ftjob-50/adapter"):
        with store.new_folder(key) as folder:
            _write(folder, {"adapter_model.safetensors": key.encode()})
    store.delete("jobs/ftjob-5")
    assert not store.exists("jobs/ftjob-5/adapter")
    assert not store.exists("jobs/ftjob-5/checkpoints/step-2")
    assert _tree(store.local_path("jobs/ftjob-50/adapter")) == {
        "adapter_model.safetensors": b"jobs/ftjob-50/adapter"
    }
    if isinstance(store, S3ArtifactStore):
        assert all(k.startswith("team/jobs/ftjob-50/") for k in bucket_keys_of(store))


# --- only S3 ---------------------------------------------------------------------------------


def test_a_half_uploaded_folder_does_not_exist(s3_store: S3ArtifactStore) -> None:
    """Objects without the marker (an uploader that died) are not a folder."""
    client, bucket = s3_store.client, s3_store.s3.bucket
    client.put_object(Bucket=bucket, Key="team/jobs/ftjob-6/adapter/adapter_model.safetensors", Body=b"x")
    assert not s3_store.exists("jobs/ftjob-6/adapter")
    with pytest.raises(FileNotFoundError):
        s3_store.local_path("jobs/ftjob-6/adapter")
    with pytest.raises(FileNotFoundError):
        list(s3_store.iter_zip("jobs/ftjob-6/adapter"))


def test_an_upload_that_fails_midway_removes_what_it_added(
    s3_store: S3ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_upload = s3_store.client.upload_file
    calls: list[str] = []

    def flaky_upload(path: str, bucket: str, name: str, **kw: object) -> None:
        calls.append(name)
        if len(calls) == 2:
            raise ConnectionError("network gone")
        real_upload(path, bucket, name, **kw)

    monkeypatch.setattr(s3_store.client, "upload_file", flaky_upload)
    with pytest.raises(ConnectionError), s3_store.new_folder("jobs/ftjob-7/adapter") as folder:
        _write(folder, {"a.json": b"{}", "b.json": b"{}", "c.json": b"{}"})
    assert bucket_keys_of(s3_store) == [] and not s3_store.exists("jobs/ftjob-7/adapter")


def test_another_host_sees_a_replaced_folder_not_its_stale_copy(
    s3_server: S3Server, s3_store: S3ArtifactStore, tmp_path: Path
) -> None:
    """Two stores on one bucket with their own caches, as a worker and a model server would be."""
    other = S3ArtifactStore(s3_store.s3, tmp_path / "other-host-cache", client=s3_server.client)
    key = "jobs/ftjob-8/merged"
    with s3_store.new_folder(key) as folder:
        _write(folder, {"model.safetensors": b"v1"})
    assert _tree(other.local_path(key)) == {"model.safetensors": b"v1"}  # fetched, then cached
    stale = s3_store.client.get_object(Bucket=s3_store.s3.bucket, Key=f"team/{key}/{MARKER}")
    old_manifest = json.loads(stale["Body"].read())

    with s3_store.new_folder(key) as folder:
        _write(folder, {"model.safetensors": b"v2", "config.json": b"{}"})
    assert _tree(other.local_path(key)) == {"model.safetensors": b"v2", "config.json": b"{}"}
    assert len(list((tmp_path / "other-host-cache" / "objects" / key).iterdir())) == 1  # old copy pruned
    with pytest.raises(FolderReplaced):  # a reader that read the old marker notices the change
        other._local_folder(key, old_manifest)


def test_local_path_downloads_once_and_reuses_the_copy(s3_store: S3ArtifactStore) -> None:
    with s3_store.new_folder("jobs/ftjob-9/adapter") as folder:
        _write(folder, {"adapter_model.safetensors": b"w"})
    shutil.rmtree(s3_store.cache_dir)  # as on a fresh host
    first = s3_store.local_path("jobs/ftjob-9/adapter")
    mtime = (first / "adapter_model.safetensors").stat().st_mtime_ns
    second = s3_store.local_path("jobs/ftjob-9/adapter")
    assert first == second and (second / "adapter_model.safetensors").stat().st_mtime_ns == mtime
    assert first.is_relative_to(s3_store.cache_dir / "objects" / "jobs" / "ftjob-9" / "adapter")


def test_get_store_picks_the_backend_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_server: S3Server
) -> None:
    from app.core.config import get_settings

    monkeypatch.setenv("TUNEDECK_DATA_DIR", str(tmp_path))
    for name in ("TUNEDECK_STORAGE", "TUNEDECK_ARTIFACTS_DIR", "TUNEDECK_S3_BUCKET", "TUNEDECK_S3_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        local = get_store()
        assert isinstance(local, LocalArtifactStore) and local.root == (tmp_path / "artifacts").resolve()

        monkeypatch.setenv("TUNEDECK_STORAGE", "s3")
        get_settings.cache_clear()
        with pytest.raises(ValueError, match="TUNEDECK_S3_BUCKET"):
            get_store()

        monkeypatch.setenv("TUNEDECK_S3_BUCKET", "artifacts-bucket")
        monkeypatch.setenv("TUNEDECK_S3_PREFIX", "/prod/tunedeck/")
        monkeypatch.setenv("TUNEDECK_S3_ENDPOINT_URL", s3_server.endpoint_url)
        get_settings.cache_clear()
        s3 = get_store()
        assert isinstance(s3, S3ArtifactStore)
        assert s3.s3 == S3Location("artifacts-bucket", "prod/tunedeck/", s3_server.endpoint_url, REGION)
        assert (
            s3.cache_dir == (tmp_path / "cache" / "s3" / "artifacts-bucket" / "prod" / "tunedeck").resolve()
        )
        assert s3.location("jobs/x/adapter") == "s3://artifacts-bucket/prod/tunedeck/jobs/x/adapter"

        monkeypatch.setenv("TUNEDECK_STORAGE", "ftp")
        get_settings.cache_clear()
        with pytest.raises(ValueError):
            get_store()
    finally:
        get_settings.cache_clear()


def bucket_keys_of(store: S3ArtifactStore) -> list[str]:
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.s3.bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _leftovers(store: ArtifactStore) -> list[str]:
    """Temporary folders a write left behind."""
    if isinstance(store, LocalArtifactStore):
        return [p.name for p in store.root.rglob("*.tmp")]
    assert isinstance(store, S3ArtifactStore)
    tmp = store.cache_dir / "tmp"
    return [p.name for p in tmp.iterdir()] if tmp.exists() else []
