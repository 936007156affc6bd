"""Registering model folders over the API: admins only, only under TUNEDECK_MODEL_ROOTS (after
symlinks and `..` are resolved), no pickle weights, no model code unless an admin allows it; and
nothing in app/ or worker/ unpickles a file or turns trust_remote_code on by itself."""

import ast
import json
import os
import struct
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.accounts import bearer, make_user
from tests.security.conftest import raw_request

REPO = Path(__file__).resolve().parents[2]


def model_folder(folder: Path, *extra: str) -> Path:
    """config.json, tokenizer.json and a one-tensor safetensors file (plus ``extra`` files)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (folder / "tokenizer.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    for name in extra:
        (folder / name).write_text("# whatever the folder's author wants to run\n")
    return folder


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Two model roots, and a folder outside both."""
    from app.core.config import get_settings

    first, second, outside = tmp_path / "models-a", tmp_path / "models-b", tmp_path / "elsewhere"
    model_folder(first / "tiny")
    model_folder(outside / "tiny")
    second.mkdir()
    (first / "escape").symlink_to(outside / "tiny", target_is_directory=True)
    monkeypatch.setenv("TUNEDECK_MODEL_ROOTS", os.pathsep.join([str(first), str(second)]))
    get_settings.cache_clear()
    return first, outside


def register(client: TestClient, path: str, name: str = "tiny-copy", **extra: object):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/models", json={"name": name, "path": path, **extra})


def test_only_folders_under_the_model_roots_can_be_registered(
    client: TestClient, roots: tuple[Path, Path]
) -> None:
    root, outside = roots
    made = register(client, str(root / "tiny"))
    assert made.status_code == 200, made.text
    assert (made.json()["id"], made.json()["kind"], made.json()["trust_remote_code"]) == (
        "tiny-copy",
        "base",
        False,
    )
    assert register(client, "tiny", name="tiny-relative").status_code == 200  # relative to a root
    for path in [
        "../elsewhere/tiny",
        "tiny/../../elsewhere/tiny",
        str(root / ".." / "elsewhere" / "tiny"),
        str(outside / "tiny"),
        "/etc",
        "escape",  # a symlink inside the root that points out of it
        str(root / "escape"),
        "%2e%2e%2felsewhere%2ftiny",  # percent-encoded: JSON does not decode it, nor do we
        "..%2felsewhere%2ftiny",
        "tiny\u0000",
        "no-such-folder",
    ]:
        refused = register(client, path, name="sneaky")
        assert refused.status_code == 400, (path, refused.text)
        error = refused.json()["error"]
        assert error["param"] == "path" and str(root) in error["message"], (path, error)
        assert "TUNEDECK_MODEL_ROOTS" in error["message"]
    names = [m["id"] for m in client.get("/api/v1/models").json()["data"]]
    assert "sneaky" not in names and {"tiny-copy", "tiny-relative"} <= set(names)


def test_registering_and_trusting_model_code_is_for_admins_and_audited(
    client: TestClient, roots: tuple[Path, Path]
) -> None:
    root, _ = roots
    model_folder(root / "custom", "modeling_custom.py")
    model_folder(root / "pickled").joinpath("model.safetensors").unlink()
    (root / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04 a pickle")
    member = TestClient(client.app, headers=bearer(make_user("alice", "member")))
    viewer = TestClient(client.app, headers=bearer(make_user("vera", "viewer")))
    for who in (member, viewer):
        denied = register(who, str(root / "tiny"))
        assert denied.status_code == 403 and "admin" in denied.json()["error"]["message"]

    code = register(client, "custom", name="custom")
    assert code.status_code == 400 and "trust_remote_code" in code.json()["error"]["message"]
    pickled = register(client, "pickled", name="pickled", trust_remote_code=True)
    assert pickled.status_code == 400 and "pickle weights" in pickled.json()["error"]["message"]

    trusted = register(client, "custom", name="custom", trust_remote_code=True)
    assert trusted.status_code == 200 and trusted.json()["trust_remote_code"] is True
    assert member.patch("/api/v1/models/custom", json={"trust_remote_code": False}).status_code == 403
    revoked = client.patch("/api/v1/models/custom", json={"trust_remote_code": False})
    assert revoked.status_code == 200 and revoked.json()["trust_remote_code"] is False
    audit = client.get("/api/v1/audit").json()["data"]
    actions = [(a["action"], a["object_id"], a["detail"].get("trust_remote_code")) for a in audit]
    assert ("model_registered", "custom", True) in actions and ("model_updated", "custom", False) in actions


def test_model_ids_in_the_path_are_names_not_paths(client: TestClient, roots: tuple[Path, Path]) -> None:
    assert register(client, "tiny").status_code == 200
    for raw in ("..", "%2e%2e", "..%2f..%2fetc", "%2e%2e%2f%2e%2e%2fetc", "../../etc/passwd"):
        status, body = raw_request(
            client.app,
            "PATCH",
            f"/api/v1/models/{raw}",
            {**dict(client.headers), "content-type": "application/json"},
        )
        assert status in (400, 404, 405, 422), (raw, status)
        assert b"root:" not in body
    unknown = client.patch("/api/v1/models/%2e%2e", json={"trust_remote_code": True})
    assert unknown.status_code == 404 and "no base model '..'" in unknown.json()["error"]["message"]


def test_the_default_model_roots_are_the_model_cache_and_the_data_dirs_models(
    configured: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app.core.config import get_settings

    monkeypatch.delenv("TUNEDECK_MODEL_ROOTS", raising=False)
    monkeypatch.setenv("TUNEDECK_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    assert get_settings().model_root_dirs == [
        (tmp_path / "cache").resolve(),
        (configured / "models").resolve(),
    ]


def _calls(folder: str) -> list[tuple[Path, ast.Call]]:
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                found.append((path, node))
    return found


def test_nothing_in_app_or_worker_unpickles_a_file() -> None:
    for folder in ("app", "worker"):
        for path, call in _calls(folder):
            name = ast.unparse(call.func)
            assert name not in ("torch.load", "torch.jit.load", "pickle.load", "pickle.loads"), (
                f"{path.relative_to(REPO)}:{call.lineno} calls {name}"
            )
        for path in (REPO / folder).rglob("*.py"):
            assert "torch.load(" not in path.read_text(), path
            assert "from torch import load" not in path.read_text(), path


def test_trust_remote_code_only_ever_comes_from_the_base_models_record() -> None:
    """Every from_pretrained gets trust_remote_code from the registered model (or leaves it off)."""
    seen = 0
    for folder in ("app", "worker"):
        for path, call in _calls(folder):
            for keyword in call.keywords:
                if keyword.arg == "trust_remote_code":
                    seen += 1
                    value = ast.unparse(keyword.value)
                    assert value.endswith("trust_remote_code") and "True" not in value, (
                        f"{path.relative_to(REPO)}:{call.lineno} passes trust_remote_code={value}"
                    )
            for node in call.args:
                if isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value == "trust_remote_code":
                            assert ast.unparse(value).endswith("trust_remote_code"), path
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value == "trust_remote_code":
                            assert ast.unparse(value).endswith("trust_remote_code"), (
                                path,
                                ast.unparse(value),
                            )
    assert seen >= 5  # the training pipeline, the model server, classification, seq2seq, DDP


def test_the_worker_never_reads_pickle_weights_of_an_untrusted_model(tmp_path: Path) -> None:
    """A folder that slipped into the catalog with only a pickle (`pytorch_model.bin`) beside its
    config is refused when the worker loads it, unless an admin trusts that model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from app.core.spec import TrainingSpec
    from tests.tiny_model import TINY_CONFIG
    from worker.training.pipeline import Device, ModelLoadError, load_model

    folder = tmp_path / "pickled"
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, **TINY_CONFIG))
    model.save_pretrained(folder)  # transformers 5 writes safetensors only; swap in a pickle
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(str(folder), TrainingSpec(), Device(False, torch.float32))
    trusted = load_model(str(folder), TrainingSpec(), Device(False, torch.float32), trust_remote_code=True)
    assert trusted.config.num_hidden_layers == TINY_CONFIG["num_hidden_layers"]  # the admin's call
