"""Property-based tests (hypothesis): whatever a user sends, the dataset parsers answer with a
parsed file or a DatasetInvalid naming what to fix, an upload is stored whole or not at all, and
no query parameter of any list or read route gets a 5xx or writes a row.

The routes are walked from the app (every GET route with query parameters), so a new one is
covered without being listed here.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.datasets.parsing import DatasetInvalid, ParsedDataset, parse_dataset
from tests.accounts import bearer, make_user
from tests.factories import INSTRUCTION_ROWS, create_job, upload
from tests.security.conftest import stored_files

pytestmark = pytest.mark.slow

QUIET = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)


def quiet(examples: int) -> settings:
    return settings(QUIET, max_examples=examples)


# JSON values with the awkward parts: lone surrogates, huge and tiny numbers, deep nesting.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
ROW_KEYS = st.sampled_from(["instruction", "input", "output", "system", "messages", "text", "label", "role"])
ROWS = st.dictionaries(ROW_KEYS | TEXT, JSON_VALUES, max_size=5)
NAMES = st.sampled_from(["d.json", "d.jsonl", "d.csv", "d", "d.txt", "d.JSON"])


def _file_bytes(rows: list[Any], shape: str, extra: bytes) -> bytes:
    if shape == "array":
        return json.dumps(rows).encode() + extra
    if shape == "jsonl":
        return b"".join(json.dumps(r).encode() + b"\n" for r in rows) + extra
    return extra  # raw bytes alone


FILES = st.tuples(
    st.lists(ROWS | JSON_VALUES, max_size=6),
    st.sampled_from(["array", "jsonl", "raw"]),
    st.binary(max_size=40) | st.sampled_from([b"", b"[" * 5000, b"\xff\xfe", b'"\\ud800"', b"9" * 5000]),
)


def _outcome(data: bytes, name: str) -> str:
    try:
        parsed = parse_dataset(data, name)
    except DatasetInvalid as exc:
        assert exc.problems, "a refusal must say what is wrong"
        assert all(isinstance(p.line, int) and p.message for p in exc.problems)
        return "invalid"
    assert isinstance(parsed, ParsedDataset) and parsed.rows
    for row in parsed.rows:  # what is kept can be stored: UTF-8 text, JSON again
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    return "parsed"


@QUIET
@given(FILES, NAMES)
def test_the_parsers_parse_or_say_what_is_wrong_and_nothing_else(
    file: tuple[Any, str, bytes], name: str
) -> None:
    _outcome(_file_bytes(*file), name)


@QUIET
@given(st.binary(max_size=300), NAMES)
def test_the_parsers_take_any_bytes(data: bytes, name: str) -> None:
    _outcome(data, name)


@QUIET
@given(
    st.lists(st.lists(TEXT, max_size=4), max_size=5),
    st.sampled_from(["instruction,input,output", "text,label", "a,b"]),
)
def test_the_csv_parser_takes_any_cells(cells: list[list[str]], header: str) -> None:
    lines = [header, *(",".join(json.dumps(c) if i % 2 else c for i, c in enumerate(row)) for row in cells)]
    _outcome("\n".join(lines).encode("utf-8", "surrogatepass"), "d.csv")


# ---- through the app: a database, an admin, a job and a file for the routes to find -------------


@pytest.fixture(scope="module")
def app_client(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    from app.basemodels.service import register_model
    from app.core.config import get_settings
    from app.core.db import migrate, session_scope
    from app.main import create_app

    data_dir = tmp_path_factory.mktemp("properties") / "data"
    data_dir.mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TUNEDECK_DATA_DIR", str(data_dir))
        env.setenv("DATABASE_URL", f"sqlite:///{data_dir / 'tunedeck.db'}")
        env.delenv("REDIS_URL", raising=False)
        env.setenv("TUNEDECK_QUEUE", "properties-nobody-listens")
        get_settings.cache_clear()
        migrate()
        key = make_user("admin", "admin")
        with session_scope() as session:
            register_model(session=session, name="tiny-llama", folder=tiny_model_dir)
        with TestClient(create_app(), headers=bearer(key)) as client:
            file_id = upload(client, INSTRUCTION_ROWS[:12])
            job_id = create_job(client, "tiny-llama", file_id)
            hook = client.post("/api/v1/webhooks", json={"url": "https://hooks.example.com/x"}).json()["id"]
            ids = {"job_id": job_id, "file_id": file_id, "dataset_id": file_id, "hook_id": hook}
            yield client, ids, data_dir
    get_settings.cache_clear()


def _row_counts() -> dict[str, int]:
    from app.core.db import get_engine

    engine = get_engine()
    with engine.connect() as connection:
        tables = sa.inspect(engine).get_table_names()
        return {t: connection.execute(sa.text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables}


@quiet(60)
@given(
    FILES,
    NAMES,
    st.sampled_from(["0.1", "0", "0.5", "1", "-1", "nan", "1e30", "x"]),
    st.sampled_from(["42", "-1", "9" * 30, "x"]),
)
def test_an_upload_is_stored_whole_or_not_at_all(
    app_client: tuple[TestClient, dict[str, str], Path],
    file: tuple[Any, str, bytes],
    name: str,
    split: str,
    seed: str,
) -> None:
    client, _ids, data_dir = app_client
    before, files_before = _row_counts()["files"], len(stored_files(data_dir))
    form = {"purpose": "fine-tune", "validation_split": split, "split_seed": seed}
    answer = client.post("/api/v1/files", files={"file": (name, _file_bytes(*file))}, data=form)
    assert answer.status_code in (200, 422), (answer.status_code, answer.text[:300])
    added = _row_counts()["files"] - before
    if answer.status_code == 200:
        assert added == 1 and len(stored_files(data_dir)) == files_before + 3  # original + both splits
    else:
        assert answer.json()["error"]["message"]
        assert added == 0 and len(stored_files(data_dir)) == files_before


def _query_routes() -> list[tuple[str, list[str]]]:
    """(path, query parameter names) of every GET route that takes query parameters."""
    from app.main import create_app

    found = []
    for top in create_app().routes:
        nested = getattr(top, "effective_route_contexts", None)  # FastAPI keeps included routers nested
        for route in nested() if nested else [top]:
            if not hasattr(route, "dependant") or "GET" not in (route.methods or ()):
                continue
            if route.path.endswith("/stream") or route.path.startswith("/v1/"):
                continue  # a never-ending answer; the model server's own (not running here)
            names = [p.alias for p in route.dependant.query_params]
            for dependency in route.dependant.dependencies:  # Annotated[Model, Query()] parameters
                names += [p.alias for p in dependency.query_params]
            if names:
                found.append((route.path, sorted(set(names))))
    return found


QUERY_ROUTES = _query_routes()
NASTY = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats().map(str),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(
        ["", "1e30", "-1", "0", "nan", "inf", "\x00", "../../etc", "' OR 1=1 --", "ftjob-nope", "[]"]
    ),
)


def test_the_list_routes_are_all_found() -> None:
    paths = {path for path, _ in QUERY_ROUTES}
    for expected in ("/api/v1/fine_tuning/jobs", "/api/v1/files", "/api/v1/audit", "/jobs", "/admin/audit"):
        assert expected in paths, sorted(paths)
    assert len(QUERY_ROUTES) >= 15


@pytest.mark.parametrize("path, names", QUERY_ROUTES, ids=[p for p, _ in QUERY_ROUTES])
def test_no_query_parameter_gets_a_5xx_or_writes_a_row(
    app_client: tuple[TestClient, dict[str, str], Path], path: str, names: list[str]
) -> None:
    client, ids, _data_dir = app_client
    url = path
    for name, value in ids.items():
        url = url.replace("{" + name + "}", value)
    if "{" in url:
        pytest.skip(f"no id to fill into {path}")
    before = _row_counts()

    @quiet(40)
    @given(st.dictionaries(st.sampled_from(names), NASTY | st.lists(NASTY, max_size=3), max_size=len(names)))
    def check(params: dict[str, Any]) -> None:
        for accept in ("application/json", "text/html"):
            answer = client.get(url, params=params, headers={"Accept": accept})
            assert answer.status_code < 500, (url, params, answer.status_code, answer.text[:300])

    check()
    assert _row_counts() == before, "a read wrote a row"
