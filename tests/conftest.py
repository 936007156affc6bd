"""Fixtures: a real database (SQLite file, or Postgres when TUNEDECK_TEST_DATABASE_URL is set),
migrated with Alembic; the real app; a tiny random Llama built once per session."""

import os

# `make test` runs two pytest workers on a 2-core box, and each test's torch (in this process and
# in every `tunedeck` process it starts, which inherit the environment) would take a thread per
# core: oversubscribed OpenMP threads spin against each other (a pair of training test files took
# 94 s so and 62 s with a thread each). Share the cores among the workers instead.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and "OMP_NUM_THREADS" not in os.environ:
    _per_worker = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ["OMP_NUM_THREADS"] = str(max(1, _per_worker))

# The model servers tests start load models when first asked (tests/worker/serving/test_preload.py
# shows the preloading a real install does), not the bundled SmolLM2 in every process.
os.environ.setdefault("TUNEDECK_SERVE_PRELOAD", "")

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.core.config import get_settings
from tests.served import references, served, served_web
from tests.tiny_model import build_tiny_llama

__all__ = ["references", "served", "served_web"]  # a model server on trained adapters, built once per process

if TYPE_CHECKING:
    from tests.e2e.support import Instance

TEST_DATABASE_URL = os.environ.get("TUNEDECK_TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TUNEDECK_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The CI Postgres; a test that asks for it fails (not skips) when it is set but down."""
    if not TEST_DATABASE_URL:
        pytest.skip("TUNEDECK_TEST_DATABASE_URL is not set")
    engine = sa.create_engine(_psycopg(TEST_DATABASE_URL))
    with engine.connect() as connection:  # raises when the server is unreachable: a failure
        connection.execute(sa.text("select 1"))
    engine.dispose()
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not TEST_REDIS_URL:
        pytest.skip("TUNEDECK_TEST_REDIS_URL is not set")
    import redis

    redis.Redis.from_url(TEST_REDIS_URL).ping()  # raises when unreachable: a failure
    return TEST_REDIS_URL


def _psycopg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def postgres_database(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    name = f"tunedeck_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(_psycopg(postgres_server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database-backed test runs on a SQLite file and, in CI, on Postgres too."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tunedeck.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def sqlite_only(database_url: str) -> None:
    """For in-process worker tests: covered on SQLite here; the end-to-end tests run the worker
    on Postgres (and Redis), so the Postgres copy of each would only repeat them."""
    if not database_url.startswith("sqlite"):
        pytest.skip("covered on SQLite; the end-to-end tests run the worker on Postgres")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, data_dir: Path, database_url: str) -> Iterator[Path]:
    """Settings pointing at this test's data dir and database, schema migrated."""
    from app.core.db import migrate

    monkeypatch.setenv("TUNEDECK_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("TUNEDECK_QUEUE", f"test-{uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    data_dir.mkdir(parents=True, exist_ok=True)
    migrate()
    yield data_dir
    get_settings.cache_clear()


@pytest.fixture
def admin_key(configured: Path) -> str:
    """An admin's API key (user ``admin``) in this test's database."""
    from tests.accounts import make_user

    return make_user("admin", "admin")


@pytest.fixture
def client(configured: Path, admin_key: str) -> Iterator[TestClient]:
    """The app, as the admin with an API key (other users: the ``login_as`` fixture)."""
    from app.main import create_app
    from tests.accounts import bearer

    with TestClient(create_app(), headers=bearer(admin_key)) as test_client:
        yield test_client


@pytest.fixture
def anonymous(configured: Path) -> Iterator[TestClient]:
    """The app with no credentials at all."""
    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def tiny_model(configured: Path, tiny_model_dir: Path) -> str:
    """The tiny Llama registered as base model ``tiny-llama``."""
    from app.basemodels.service import register_model
    from app.core.db import session_scope

    with session_scope() as session:
        register_model(session=session, name="tiny-llama", folder=tiny_model_dir)
    return "tiny-llama"


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator["Instance"]:
    """SQLite + the embedded filesystem broker: what `make run` starts (one per test process,
    shared by the end-to-end, browser, CLI-client and security tests), with an HF token in its
    environment that the security tests look for everywhere."""
    from tests.e2e.support import HF_TOKEN, Instance

    instance = Instance(tmp_path_factory.mktemp("embedded") / "data", env={"HF_TOKEN": HF_TOKEN})
    instance.cli(
        "models", "register", "--data-dir", str(instance.data_dir), "tiny-llama", str(tiny_model_dir)
    )
    yield instance.start()
    instance.stop()


# Files whose tests use the session-scoped model server (tests/served.py): pytest-xdist sends
# them to one worker process as a unit, so it is trained and started once, not once per worker.
SHARES_THE_MODEL_SERVER = {
    "tests/worker/serving/test_server.py",
    "tests/playground/test_playground.py",
    "tests/evals/test_evals.py",
    "tests/e2e/test_browser_playground.py",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadfile``, with the files above as one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "the model server's tests" if path in SHARES_THE_MODEL_SERVER else path

    return Scheduling(config, log)  # type: ignore[arg-type]
