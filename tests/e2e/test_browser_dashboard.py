"""The dashboard in a real browser (Debian's Chromium, headless): start a job from the form and
watch points arrive, cancel another, filter the jobs list live, switch the chart's axis and
smoothing, compare two jobs, and open every page at laptop and wide widths without a console
error. Screenshots go to test-artifacts/screenshots/."""

import re
from typing import Any

import pytest

from tests.e2e import test_browser
from tests.e2e.support import Instance, wait_for
from tests.factories import upload

pytestmark = pytest.mark.slow

browser = test_browser.browser  # the module-scoped headless Chromium
ARTIFACTS = test_browser.ARTIFACTS

FORM = {
    "n_epochs": "3",
    "batch_size": "4",
    "gradient_accumulation_steps": "1",
    "learning_rate": "0.005",
    "logging_steps": "1",
    "max_seq_length": "128",
}


def watched_page(
    browser: Any, instance: Instance, width: int = 1400, enforce_csp: bool = False
) -> tuple[Any, list[str]]:
    """A page that records console errors. Tests that poll the page with wait_for_function need
    the content security policy bypassed (Playwright evaluates those strings); the tour of every
    page at the end enforces it, so a policy violation there is a console error."""
    page = browser.new_page(viewport={"width": width, "height": 900}, bypass_csp=not enforce_csp)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    instance.login(page)
    return page, errors


def test_start_watch_cancel_filter_and_compare_in_the_browser(browser: Any, embedded: Instance) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with embedded.client() as client:
        file_id = upload(client)
    page, errors = watched_page(browser, embedded)
    url = embedded.url

    # Start a job from the form, with the keyboard-reachable fields filled in.
    page.goto(url + "/jobs/new")
    page.select_option("#f-model", "tiny-llama")
    page.select_option("#f-training_file", file_id)
    page.fill("#f-suffix", "browser-a")
    for name, value in FORM.items():
        page.fill(f"#f-{name}", value)
    page.select_option("#f-gradient_checkpointing", "off")
    page.click(".actions button.primary:has-text('Start fine-tuning')")
    page.wait_for_url(re.compile(r".*/jobs/ftjob-[0-9a-f]+$"))
    first = page.url.rsplit("/", 1)[1]
    page.wait_for_function(
        "Number(document.getElementById('chart').dataset.points || 0) > 0", timeout=180_000
    )
    assert page.get_attribute("#job", "data-status") in ("running", "succeeded")
    for figure in ("#chart-lr", "#chart-grad", "#chart-memory"):
        page.wait_for_selector(figure + " canvas", timeout=30_000)
    page.select_option("[data-x-axis]", "epoch")  # the x axis switches to epochs
    page.wait_for_selector("#chart .u-label:has-text('epoch')", state="attached")
    page.fill("[data-smoothing]", "0.9")
    assert page.inner_text("[data-smoothing-value]") == "0.90"
    page.screenshot(path=str(ARTIFACTS / "job-charts.png"), full_page=True)

    # A second job waits behind the first; cancel it from its page.
    with embedded.client() as client:
        hp = {k: float(v) if "." in v else int(v) for k, v in FORM.items()}
        second = client.post(
            "/api/v1/fine_tuning/jobs",
            json={
                "model": "tiny-llama",
                "training_file": file_id,
                "hyperparameters": {**hp, "n_epochs": 200},
            },
        ).json()["id"]
        third = client.post(
            "/api/v1/fine_tuning/jobs",
            json={
                "model": "tiny-llama",
                "training_file": file_id,
                "suffix": "browser-c",
                "hyperparameters": {**hp, "n_epochs": 2, "learning_rate": 0.001, "r": 16},
            },
        ).json()["id"]
    page.goto(f"{url}/jobs/{second}")
    page.click("text=Cancel job")
    page.wait_for_function("document.getElementById('job').dataset.status === 'cancelled'", timeout=60_000)
    assert page.locator("[data-status-badge]").inner_text().lower() == "cancelled"

    # The overview shows the queue and the worker; the jobs list filters live as you type.
    page.goto(url + "/")
    page.wait_for_selector("#workers li")
    assert "cpu" in page.inner_text("#workers")
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)
    page.goto(url + "/jobs")
    page.fill("#jobs-q", "browser-a")
    page.wait_for_function(f"!document.querySelector('#jobs-table').innerText.includes('{second}')")
    assert first in page.inner_text("#jobs-table") and "q=browser-a" in page.url
    page.goto(url + "/jobs")

    # Compare the two finished jobs: tick them in the list, then look at curves and the diff.
    with embedded.client() as client:
        wait_for(
            lambda: client.get(f"/api/v1/fine_tuning/jobs/{third}").json()["status"] == "succeeded",
            timeout=300,
            message="the third job",
        )
    page.reload()
    page.check(f"input[value='{first}']")
    page.check(f"input[value='{third}']")
    page.click("text=Compare selected")
    page.wait_for_url(re.compile(r".*/compare\?.*"))
    page.wait_for_function("Number(document.getElementById('compare-train').dataset.points || 0) > 0")
    differing = page.locator("tr.differs-row th").all_inner_texts()
    assert "learning_rate" in differing and "r" in differing and "batch_size" not in differing
    assert page.locator("tr.same").first.is_hidden()  # "only what differs" is on
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
    compare_url = page.url

    pages = {
        "overview": "/",
        "jobs": "/jobs",
        "job": f"/jobs/{first}",
        "job-cancelled": f"/jobs/{second}",
        "new-job": "/jobs/new",
        "clone": f"/jobs/new?clone={first}",
        "datasets": "/datasets",
        "dataset": f"/datasets/{file_id}",
        "models": "/models",
        "playground": "/playground",
        "account": "/account",
        "users": "/admin/users",
        "audit": "/admin/audit",
        "compare": compare_url.removeprefix(url),
    }
    for width in (1280, 1920):
        wide, wide_errors = watched_page(browser, embedded, width, enforce_csp=True)
        for name, path in pages.items():
            wide.goto(url + path)
            wide.wait_for_load_state("networkidle") if name != "job" else wide.wait_for_timeout(1500)
            wide.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        wide.close()
        assert wide_errors == [], (width, wide_errors)
    assert errors == [], errors
