"""The wheel carries the pages, the migrations and the pinned front-end libraries."""

import subprocess
import sys
import zipfile
from pathlib import Path

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
    assert "artifacts:/data" in server["volumes"]  # it reads adapters and merged models from there
