"""The wheel carries the pages, the migrations and the pinned front-end libraries."""

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_bundles_templates_static_vendor_and_migrations(tmp_path: Path) -> None:
    assert (ROOT / "static" / "vendor" / "htmx.min.js").exists(), "run `make assets` first"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("tunedeck-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "app/_bundle/static/vendor/htmx.min.js",
        "app/_bundle/static/vendor/uPlot.iife.min.js",
        "app/_bundle/static/vendor/uPlot.min.css",
        "app/_bundle/static/js/job.js",
        "app/_bundle/templates/pages/job.html",
        "app/_bundle/migrations/versions/0001_initial_schema.py",
        "app/demo/demo_dataset.jsonl",
        "worker/training/pipeline.py",
    ):
        assert expected in names, expected
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "tunedeck = app.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_compose_runs_the_model_server_next_to_the_web_app() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())
    services = compose["services"]
    server = services["model-server"]
    assert server["command"][:2] == ["tunedeck", "serve"] and "8001" in server["command"]
    assert server["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["web"]["environment"]["TUNEDECK_MODEL_SERVER_URL"] == "http://model-server:8001"
    assert "cache:/data" in server["volumes"]  # its download cache of the bucket's adapters


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_is_production_shaped() -> None:
    """Postgres, Redis, MinIO (+ a one-shot bucket service), web, model server, a worker per GPU:
    images, settings, volumes, GPU reservations, health checks, restarts, required secrets."""
    compose = _compose()
    services = compose["services"]
    stores = {"postgres", "redis", "minio", "minio-setup"}
    assert stores | {"web", "model-server", "worker-gpu0", "worker-gpu1"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    setup = services["minio-setup"]
    assert setup["image"].startswith("minio/mc:RELEASE.") and "mc mb --ignore-existing" in setup["command"][0]
    assert setup["depends_on"]["minio"]["condition"] == "service_healthy" and setup["restart"] == "no"
    assert services["web"]["depends_on"]["minio-setup"]["condition"] == "service_completed_successfully"
    assert services["web"]["build"]["target"] == "web"
    for name in ("model-server", "worker-gpu0", "worker-gpu1"):
        assert services[name]["build"]["target"] == "worker"

    tunedeck = ("web", "model-server", "worker-gpu0", "worker-gpu1")
    for name in tunedeck:
        env = services[name]["environment"]
        assert env["TUNEDECK_STORAGE"] == "s3" and env["TUNEDECK_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert env["TUNEDECK_S3_BUCKET"] and "TUNEDECK_S3_PREFIX" in env and env["TUNEDECK_S3_REGION"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["AWS_SECRET_ACCESS_KEY"] == "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD}"
        assert env["TUNEDECK_METRICS_TOKEN"].startswith("${TUNEDECK_METRICS_TOKEN:?")
        assert "models:/models" in services[name]["volumes"]
    assert "${POSTGRES_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert "${MINIO_ROOT_PASSWORD:?" in services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]

    for index in (0, 1):  # one worker per GPU, each seeing only its own
        worker = services[f"worker-gpu{index}"]
        assert worker["environment"]["CUDA_VISIBLE_DEVICES"] == str(index)
        assert worker["command"] == ["tunedeck", "worker", "--name", f"gpu{index}@%h"]
        [device] = worker["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert services["worker-gpu1"]["profiles"] == ["multi-gpu"]  # opt-in on hosts with 2+ GPUs
    assert "gpu" in str(services["model-server"]["deploy"])

    for name, service in services.items():
        if name == "minio-setup":  # one-shot: runs to completion, nothing to probe
            continue
        check = " ".join(service["healthcheck"]["test"])
        assert service["restart"] == "unless-stopped", name
        probe = {
            "postgres": "pg_isready",
            "redis": "redis-cli ping",
            "minio": "mc ready local",
            "web": "8000/readyz",
            "model-server": "8001/readyz",
        }.get(name, "inspect ping")
        assert probe in check, name

    volumes = set(compose["volumes"])
    assert {"postgres-data", "redis-data", "minio-data", "cache", "models"} <= volumes
    for service in services.values():
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in volumes, mount  # named volumes only, no host paths


def test_the_web_image_has_no_torch() -> None:
    """The compose web service builds the Dockerfile's `web` stage, which installs only the base
    dependencies; none of them is torch or pulls it in."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    stage = dockerfile.split("AS web")[1].split("FROM ")[0]
    installs = [line for line in stage.splitlines() if "pip install" in line]
    assert installs and all("torch" not in line and "[worker]" not in line for line in installs)
    import tomllib

    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    heavy = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes")
    assert not [dep for dep in base if dep.split("[")[0].split(">")[0].split("=")[0].strip() in heavy]
    assert any(dep.startswith("prometheus-client") or dep.startswith("prometheus_client") for dep in base)
