"""The job page in a real browser (Debian's Chromium, headless): the chart grows while the job
runs, the status badge flips to succeeded without a reload, and no page logs a console error."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import Instance
from tests.e2e.test_spine import TINY_JOB
from tests.factories import upload

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("TUNEDECK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs it")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        args = [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ]
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield instance
        instance.close()


def test_job_page_chart_grows_live_and_pages_have_no_console_errors(
    browser: object, embedded: Instance, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    embedded.login(page)
    with embedded.client() as client:
        file_id = upload(client)
        spec = {**TINY_JOB, "n_epochs": 8}
        job_id = client.post(
            "/api/v1/fine_tuning/jobs",
            json={"model": "tiny-llama", "training_file": file_id, "hyperparameters": spec},
        ).json()["id"]

    page.goto(f"{embedded.url}/jobs/{job_id}")
    page.wait_for_function(
        "Number(document.getElementById('chart').dataset.points || 0) > 0", timeout=120_000
    )
    early = int(page.get_attribute("#chart", "data-points") or 0)
    assert page.locator("#chart canvas").count() == 1
    page.screenshot(path=str(ARTIFACTS / "job-running.png"), full_page=True)
    page.wait_for_function("document.getElementById('job').dataset.status === 'succeeded'", timeout=180_000)
    later = int(page.get_attribute("#chart", "data-points") or 0)
    assert later > early, "the chart did not grow while the job ran"
    assert page.locator("[data-status-badge]").inner_text().lower() == "succeeded"
    assert page.locator("#download").is_visible() and page.locator("#cancel-form").is_hidden()
    page.wait_for_selector("#checkpoints table")
    page.screenshot(path=str(ARTIFACTS / "job-succeeded.png"), full_page=True)

    for name, path in [
        ("jobs", "/jobs"),
        ("new-job", "/jobs/new"),
        ("datasets", "/datasets"),
        ("dataset", f"/datasets/{file_id}"),
        ("models", "/models"),
    ]:
        page.goto(embedded.url + path)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.goto(f"{embedded.url}/datasets/{file_id}")
    page.click("text=Next →")
    page.wait_for_selector("text=page 2 of 2")
    assert errors == [], errors
