"""The playground in a real browser (Debian's Chromium, headless) against `tunedeck web` on the
served models' database: two panes stream their own answers at once, keep their own history, and a
blind A/B vote reveals the names and lands on the leaderboard; no console errors throughout.
Screenshots go to test-artifacts/screenshots/playground*.png."""

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e import test_browser
from tests.e2e.support import TUNEDECK, free_port, login, server_process, stop, wait_for
from tests.served import NEW_TOKENS, QUESTION, Served

pytestmark = pytest.mark.slow

browser = test_browser.browser  # the module-scoped headless Chromium
ARTIFACTS = test_browser.ARTIFACTS
__all__ = ["browser"]  # the fixture this module uses


@pytest.fixture(scope="module")
def web_url(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tunedeck web` on the served models' database, chatting through that model server, and a
    short-lane worker answering its batch compares."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**served.env, "TUNEDECK_MODEL_SERVER_URL": served.url}
    data = ["--data-dir", served.env["TUNEDECK_DATA_DIR"]]
    logs = tmp_path_factory.mktemp("playground-web")
    with open(logs / "short-lane.log", "wb") as log:
        short_lane = subprocess.Popen(
            [TUNEDECK, "worker", *data, "--lanes", "short", "--name", "short@test"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        command = [TUNEDECK, "web", *data, "--port", str(port)]
        with server_process(command, env, logs / "web.log", url, "the web process", timeout=60):
            yield url
    finally:
        stop(short_lane)


def watched_page(browser: Any, web_url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    page.set_default_timeout(90_000)  # a busy 2-core CI machine streams slowly
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(page, web_url)
    return page, errors


ROUND_DONE = (
    "document.getElementById('playground').dataset.busy === '0' && "
    "document.querySelectorAll('.pg-pane[data-state=done]').length === 2"
)


def ask(page: Any, prompt: str) -> None:
    """Type into the shared prompt box, press Enter, wait until both panes have answered."""
    page.fill("#pg-prompt", prompt)
    page.press("#pg-prompt", "Enter")
    page.wait_for_function(ROUND_DONE, timeout=120_000)


def greedy(page: Any) -> None:
    """Temperature 0 and the reference length in every pane, through its settings block."""
    for pane in page.locator(".pg-pane").all():
        pane.locator(".pg-settings summary").click()
        pane.locator(".pg-temperature").fill("0")
        pane.locator(".pg-max-tokens").fill(str(NEW_TOKENS))


def test_panes_stream_side_by_side_keep_history_and_blind_votes_reveal(
    browser: Any, web_url: str, served: Served, references: dict[str, str]
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, errors = watched_page(browser, web_url)
    page.goto(web_url + "/playground")
    panes = page.locator(".pg-pane")
    assert panes.count() == 2
    newest = served.adapters[1]
    assert [p.locator(".pg-model").input_value() for p in panes.all()] == ["tiny-llama", newest]
    greedy(page)

    ask(page, QUESTION[0]["content"])
    replies = [p.locator(".pg-msg-assistant .pg-text").last.text_content() for p in panes.all()]
    assert replies == [references["tiny-llama"], references[newest]]
    assert replies[0] != replies[1]
    for pane in panes.all():
        assert int(pane.get_attribute("data-deltas") or 0) > 1  # streamed piece by piece
        assert re.fullmatch(r"\d+\.\d+ s", pane.locator(".pg-ttft").inner_text())
        assert re.fullmatch(r"\d+(\.\d)?", pane.locator(".pg-tps").inner_text())

    ask(page, "And what is 5 plus 1?")
    for pane in panes.all():
        assert pane.locator(".pg-msg-user").count() == 2
        assert pane.locator(".pg-msg-assistant").count() == 2
    page.focus("#pg-prompt")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "pg-send"
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)

    # Stop: the answers are cut short and the model server stops generating them.
    cancelled = httpx.get(served.url + "/healthz", headers=served.auth).json()["stats"]["cancelled"]
    for pane in panes.all():
        pane.locator(".pg-max-tokens").fill("3000")
    page.fill("#pg-prompt", "Tell me a very long story.")
    page.press("#pg-prompt", "Enter")
    # Either pane may be the first to stream (the two requests race to the model server).
    page.wait_for_function(
        "[...document.querySelectorAll('.pg-pane')].some(p => Number(p.dataset.deltas || 0) > 3)"
    )
    page.click("#pg-stop")
    page.wait_for_function("document.getElementById('playground').dataset.busy === '0'")
    assert [p.get_attribute("data-state") for p in panes.all()] == ["stopped", "stopped"]
    wait_for(
        lambda: (
            httpx.get(served.url + "/healthz", headers=served.auth).json()["stats"]["cancelled"] > cancelled
        ),
        timeout=30,
        message="the model server to stop generating",
    )

    page.click("#pg-clear")
    assert page.locator(".pg-msg").count() == 0
    assert not errors, errors

    # A model server that is down: each pane shows the message of the 503.
    down = {"error": {"message": "The model server at http://127.0.0.1:9 is not reachable."}}
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=503, content_type="application/json", body=json.dumps(down)),
    )
    page.fill("#pg-prompt", "Anyone there?")
    page.press("#pg-prompt", "Enter")
    page.wait_for_function("document.querySelectorAll('.pg-pane[data-state=error]').length === 2")
    message = "The model server at http://127.0.0.1:9 is not reachable."
    assert page.locator(".pg-msg-error .pg-text").all_text_contents() == [message, message]
    page.unroute("**/v1/chat/completions")
    errors[:] = [e for e in errors if "503" not in e]  # the browser logs the failed request itself

    # Up to four panes, each with its own picker; the add button stops at four.
    page.click("#pg-add")
    page.click("#pg-add")
    assert panes.count() == 4 and page.locator("#pg-add").is_disabled()
    assert len({p.locator(".pg-model").input_value() for p in panes.all()}) == 4  # new panes pick new models
    page.screenshot(path=str(ARTIFACTS / "playground-4-panes.png"))
    panes.nth(3).locator(".pg-remove").click()
    assert panes.count() == 3 and page.locator("#pg-add").is_enabled()

    # Blind: two hidden models answer; a vote reveals them and counts on the leaderboard.
    page.goto(web_url + "/playground?blind=1")
    assert [t.inner_text() for t in page.locator(".pg-title").all()] == ["A", "B"]
    assert page.locator(".pg-pane .pg-model").count() == 0  # no picker gives the names away
    page.click("#pg-draw")
    greedy(page)
    ask(page, QUESTION[0]["content"])
    assert page.locator("#pg-vote").is_visible()
    page.click("text=A is better")
    page.wait_for_selector("#leaderboard[data-votes='1']")
    reveal = page.inner_text("#pg-reveal")
    titles = [t.inner_text() for t in page.locator(".pg-title").all()]
    shown = {title.split(" · ", 1)[1] for title in titles}
    assert shown == {"tiny-llama", newest} and f"A was {titles[0].split(' · ', 1)[1]}" in reveal
    games = page.locator("#leaderboard tbody tr.voted td:nth-child(2)").all_inner_texts()  # (evals add rows)
    assert games == ["1", "1"]
    assert page.locator("#pg-new-pair").is_visible()
    page.screenshot(path=str(ARTIFACTS / "playground-blind.png"), full_page=True)

    # Batch compare: the default two models answer pasted prompts; the table fills in.
    page.fill("#batch-prompts", "What is 3 plus 4?\n<b>=SUM(A1)</b>")
    page.fill("#batch-max-tokens", str(NEW_TOKENS))
    page.click("#batch-run")
    page.wait_for_selector("#batch-result[data-status=succeeded]", timeout=120_000)
    assert page.locator(".pg-batch-table tbody tr").count() == 2
    assert "<b>=SUM(A1)</b>" in page.inner_text(".pg-batch-table")  # shown as text, not markup
    assert page.locator("#batch-result a:has-text('Download CSV')").is_visible()
    page.locator("#batch").screenshot(path=str(ARTIFACTS / "playground-batch.png"))
    assert not errors, errors
