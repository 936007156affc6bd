"""Attacks a real browser (Debian's Chromium, headless) would carry out for someone else:

- a page on another origin posting to tunedeck while the admin is logged in (cross-site request
  forgery) changes nothing: the session cookie rides along, but without the page's CSRF token
  the answer is 403; nor can it log the browser in to the attacker's account (login CSRF);
- `<script>` and `onerror=` in a dataset's name and cells, a job event (server-rendered and
  arriving live) and a model's answer in the playground stay text: `window.__pwned` stays
  undefined and the literal text is on the page. The pages are opened with CSP bypassed, so it
  is the escaping that is tested, not the policy.
"""

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_browser
from tests.e2e.support import Instance
from tests.factories import INSTRUCTION_ROWS
from tests.security.conftest import SCRIPT, FinishedJob

pytestmark = pytest.mark.slow

browser = test_browser.browser  # the module-scoped headless Chromium
__all__ = ["browser"]

HOSTILE_NAME = "<img src=x onerror=window.__pwned=3>.jsonl"  # (no quotes: clients %-encode those)
LONG_JOB = {"n_epochs": 200, "batch_size": 4, "gradient_accumulation_steps": 1, "max_seq_length": 128}
LONG_JOB |= {"gradient_checkpointing": False, "logging_steps": 1}


@pytest.fixture(scope="module")
def running_job(instance: Instance, finished_job: FinishedJob) -> Iterator[str]:
    """A long job on a dataset with a hostile name, cancelled when the module is done."""
    data = "".join(json.dumps(row) + "\n" for row in INSTRUCTION_ROWS).encode()
    with instance.client() as client:
        uploaded = client.post(
            "/api/v1/files", files={"file": (HOSTILE_NAME, data)}, data={"purpose": "fine-tune"}
        )
        assert uploaded.status_code == 200, uploaded.text
        body = {"model": "tiny-llama", "training_file": uploaded.json()["id"], "hyperparameters": LONG_JOB}
        job_id = client.post("/api/v1/fine_tuning/jobs", json=body).json()["id"]
        try:
            yield job_id
        finally:
            client.post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel")


def job(instance: Instance, job_id: str) -> dict[str, Any]:
    with instance.client() as client:
        return dict(client.get(f"/api/v1/fine_tuning/jobs/{job_id}").json())


def add_event(instance: Instance, job_id: str, message: str) -> None:
    """Write an event into the instance's own database, as a worker would."""
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.core.events import add_event as add

    with pytest.MonkeyPatch.context() as env:
        env.setenv("TUNEDECK_DATA_DIR", str(instance.data_dir))
        env.delenv("DATABASE_URL", raising=False)
        get_settings.cache_clear()
        with session_scope() as session:
            add(session=session, job_id=job_id, message=message, level="warning")
    get_settings.cache_clear()


@pytest.fixture
def page(browser: Any, instance: Instance) -> Iterator[Any]:
    opened = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    instance.login(opened)
    yield opened
    opened.close()


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain web server on another port: the attacker's site."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def test_a_page_on_another_origin_cannot_cancel_a_job(
    page: Any, instance: Instance, running_job: str, other_origin: tuple[str, Path]
) -> None:
    site, folder = other_origin
    target = f"{instance.url}/jobs/{running_job}/cancel"
    api = f"{instance.url}/api/v1/fine_tuning/jobs/{running_job}/cancel"
    (folder / "form.html").write_text(
        f'<form method="post" action="{target}"><input name="reason" value="x"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    (folder / "fetch.html").write_text(
        f"<script>fetch({json.dumps(api)}, {{method: 'POST', mode: 'no-cors', credentials: 'include'}})"
        ".then(() => document.title = 'sent', () => document.title = 'failed')</script>"
    )
    with page.expect_response(lambda r: r.url == target) as answer:
        page.goto(f"{site}/form.html")
    assert answer.value.status == 403  # the browser sent the cookie; the token was missing
    assert "CSRF token" in page.content()
    page.goto(f"{site}/fetch.html")
    page.wait_for_function("document.title !== ''")
    state = job(instance, running_job)
    assert state["status"] not in ("cancelled",) and not state["cancel_requested"], state
    # The same browser, on tunedeck's own page (which carries the token), can cancel it.
    page.goto(f"{instance.url}/jobs/{running_job}")
    assert page.locator("#cancel-form").is_visible()


def test_a_page_on_another_origin_cannot_log_the_browser_in(
    browser: Any, instance: Instance, other_origin: tuple[str, Path]
) -> None:
    """Login CSRF: the attacker's page posts the attacker's own credentials; Chromium sends its
    Origin, the login is refused and the browser stays logged out."""
    from tests.accounts import PASSWORD

    site, folder = other_origin
    (folder / "login.html").write_text(
        f'<form method="post" action="{instance.url}/login"><input name="username" value="admin">'
        f'<input name="password" value="{PASSWORD}"></form><script>document.forms[0].submit()</script>'
    )
    fresh = browser.new_page()
    try:
        with fresh.expect_response(lambda r: r.url == f"{instance.url}/login") as answer:
            fresh.goto(f"{site}/login.html")
        assert answer.value.status == 403 and "another site" in fresh.content()
        fresh.goto(f"{instance.url}/jobs")
        assert fresh.url.startswith(f"{instance.url}/login")  # still logged out
    finally:
        fresh.close()


def test_script_in_names_cells_events_and_model_output_stays_text(
    page: Any, instance: Instance, finished_job: FinishedJob, running_job: str
) -> None:
    add_event(instance, finished_job.id, "Advisor: " + SCRIPT)
    checks = [
        (f"/datasets/{finished_job.file_id}", SCRIPT),
        ("/datasets", HOSTILE_NAME),
        (f"/jobs/{finished_job.id}", SCRIPT),
        (f"/jobs/{running_job}", HOSTILE_NAME),
        (f"/compare?ids={finished_job.id},{running_job}", HOSTILE_NAME),
    ]
    for path, text in checks:
        page.goto(instance.url + path)
        assert text in page.locator("body").inner_text(), path
        assert page.evaluate("window.__pwned") is None, path

    # An event that arrives while the page is open goes in through job.js.
    page.goto(f"{instance.url}/jobs/{running_job}")
    add_event(instance, running_job, "Live: " + SCRIPT)
    page.wait_for_function(
        "[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('Live: <script>'))",
        timeout=60_000,
    )
    assert page.evaluate("window.__pwned") is None

    # The playground shows a model's answer as text: the model server's stream is replaced here by
    # one whose answer is markup (the tiny model would never write it on its own).
    chunks = ["<script>window.__pwned = 4</script>", '<img src=x onerror="window.__pwned = 5">']
    stream = "".join(f"data: {json.dumps({'choices': [{'delta': {'content': c}}]})}\n\n" for c in chunks)
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200, content_type="text/event-stream", body=stream + "data: [DONE]\n\n"
        ),
    )
    page.goto(f"{instance.url}/playground")
    page.fill("#pg-prompt", "<b>hello</b>")
    page.press("#pg-prompt", "Enter")
    page.wait_for_function(
        "document.querySelectorAll('.pg-pane[data-state=done]').length >= 1", timeout=60_000
    )
    replies = page.locator(".pg-pane[data-state=done] .pg-chat").first.inner_text()
    assert "".join(chunks) in replies and "<b>hello</b>" in replies
    assert page.evaluate("window.__pwned") is None
