"""Every route the app has (walked from the router, so a new one cannot forget) needs a login or
an API key: the API answers 401, the dashboard sends browsers to the login page. A revoked key
counts as no key. Only the login page, static files, health checks and /metrics (its own
scrape-token rule) are public; the API docs and the OpenAPI schema want a login too."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from tests.accounts import bearer, make_user

PUBLIC = {"/login", "/healthz", "/livez", "/readyz"}
PUBLIC |= {"/metrics"}  # Prometheus: its own scrape-token rule (app/ops/metrics.py)
DUMMY_IDS = {"job_id": "ftjob-nope", "file_id": "file-nope", "dataset_id": "file-nope", "key_id": "key-nope"}


def routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through included routers (FastAPI ≥ 0.120 keeps them nested)."""
    for route in app.routes:
        nested = getattr(route, "effective_route_contexts", None)
        for each in nested() if nested else [route]:
            if isinstance(each, Mount):
                continue  # /static: public files
            assert isinstance(each, APIRoute | Route) or hasattr(each, "methods"), each
            for method in sorted(each.methods or ()):
                if method != "HEAD":
                    yield method, each.path


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(?::path)?\}", lambda m: DUMMY_IDS.get(m.group(1), "nope-1"), path)


@pytest.fixture
def every_route(anonymous: TestClient) -> list[tuple[str, str]]:
    found = sorted(set(routes(anonymous.app)))
    assert ("GET", "/api/v1/fine_tuning/jobs/{job_id}/stream") in found  # SSE
    assert ("GET", "/api/v1/fine_tuning/jobs/{job_id}/checkpoints/{checkpoint_id}/download") in found
    assert ("POST", "/api/v1/models") in found and ("GET", "/jobs/{job_id}") in found
    assert len(found) > 80
    return found


def test_every_api_route_answers_401_without_credentials_or_with_a_revoked_key(
    anonymous: TestClient, every_route: list[tuple[str, str]], configured: Path
) -> None:
    secret = make_user("eve", "member")
    with TestClient(anonymous.app, headers=bearer(secret)) as eve:
        key_id = eve.get("/api/v1/me/api_keys").json()[0]["id"]
        assert eve.delete(f"/api/v1/me/api_keys/{key_id}").status_code == 200
    api = [(m, p) for m, p in every_route if p.startswith(("/api/", "/v1/"))]
    assert len(api) > 50
    for method, path in api:
        url = concrete(path)
        for headers in ({}, bearer(secret)):
            answer = anonymous.request(method, url, headers=headers, json={})
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.json()["error"]["type"] == "authentication_error"
            assert answer.headers["www-authenticate"] == "Bearer"


def test_every_page_sends_an_anonymous_browser_to_the_login_page(
    anonymous: TestClient, every_route: list[tuple[str, str]]
) -> None:
    pages = [(m, p) for m, p in every_route if not p.startswith(("/api/", "/v1/")) and p not in PUBLIC]
    assert len(pages) > 25
    for method, path in pages:
        url = concrete(path)
        answer = anonymous.request(method, url, headers={"Accept": "text/html"}, follow_redirects=False)
        assert answer.status_code == 303, (method, path, answer.status_code)
        assert answer.headers["location"].startswith("/login?next="), (method, path)
    public = {p for _, p in every_route if p in PUBLIC}
    assert public == PUBLIC, "a public route was added or removed: review PUBLIC"
    for path in ("/login", "/healthz"):
        assert anonymous.get(path).status_code == 200
