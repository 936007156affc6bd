"""The datasets pages in a real browser: a file chosen in the drop zone uploads with a progress
bar and lands on its page with the token-length histogram; a bad file dropped on the zone shows
the problem list in place; no page logs a console error."""

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_browser
from tests.e2e.support import Instance

pytestmark = pytest.mark.slow

browser = test_browser.browser  # the module-scoped headless Chromium
ARTIFACTS = test_browser.ARTIFACTS

RECORD_PROGRESS = """
document.addEventListener("upload-progress", (event) => {
  const seen = Number(sessionStorage.getItem("upload-max-percent") || 0);
  sessionStorage.setItem("upload-max-percent", String(Math.max(seen, event.detail.percent)));
});
"""

DROP = """([name, text]) => {
  const data = new DataTransfer();
  data.items.add(new File([text], name, { type: "application/x-ndjson" }));
  const zone = document.querySelector(".dropzone");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data }));
  }
}"""


def rows_file(folder: Path, n: int = 400) -> Path:
    rows = [
        {"instruction": f"Add {i} and {i + 1}. " + "Show the working. " * (i % 40), "output": f"{2 * i + 1}"}
        for i in range(n)
    ]
    path = folder / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_drop_zone_uploads_with_progress_and_shows_problems(
    browser: Any, embedded: Instance, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    embedded.login(page)
    page.add_init_script(RECORD_PROGRESS)
    # Slow the upload down so that the progress bar can be seen (and photographed) mid-way.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    throttle = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 120_000}
    cdp.send("Network.emulateNetworkConditions", throttle)

    page.goto(f"{embedded.url}/datasets")
    assert page.locator(".dropzone").is_visible()
    assert page.get_by_label("Drop a JSON, JSONL or CSV file here, or choose one").count() == 1
    assert page.locator(".upload-submit").is_hidden()  # choosing a file uploads it at once

    page.set_input_files("#u-file", str(rows_file(tmp_path)))
    status = page.locator("[data-upload-status]")
    status.wait_for(state="visible")
    page.wait_for_function(
        "() => { const p = document.querySelector('[data-upload-status] progress');"
        " return p && p.value > 0 && p.value < 100; }",
        timeout=20_000,
    )
    assert "sent" in page.locator("[data-upload-bytes]").inner_text()
    page.screenshot(path=str(ARTIFACTS / "datasets-upload.png"), full_page=True)

    page.wait_for_url("**/datasets/file-*", timeout=60_000)
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": -1})
    assert page.evaluate("sessionStorage.getItem('upload-max-percent')") == "100"
    histogram = page.locator("#token-histogram svg")
    histogram.wait_for(state="visible")
    assert histogram.locator("rect.bar").count() >= 20
    assert "max_seq_length 1024" in (page.locator("#token-histogram .hist-cut").text_content() or "")
    box = histogram.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100

    page.goto(page.url.split("?")[0] + "?max_seq_length=160")  # a cut inside the data
    cut = page.locator("#token-histogram .hist-cut")
    assert "max_seq_length 160" in (cut.text_content() or "")
    assert page.locator("#token-histogram rect.bar-truncated").count() > 0
    card = page.locator("section.card", has=page.locator("#token-histogram"))
    card.screenshot(path=str(ARTIFACTS / "dataset-histogram.png"))

    page.goto(f"{embedded.url}/datasets")
    page.evaluate(DROP, ["bad.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n'])
    problems = page.locator("#upload-problems")
    problems.wait_for(state="visible", timeout=20_000)
    assert "Nothing was stored" in problems.inner_text() and "line 2" in problems.inner_text()
    assert page.url.endswith("/datasets") and page.locator(".dropzone").is_visible()
    page.screenshot(path=str(ARTIFACTS / "datasets-problems.png"), full_page=True)

    # Chromium reports every 4xx answer to a script's request; the 422 above is the expected one.
    unexpected = [e for e in errors if "status of 422" not in e]
    assert unexpected == [], unexpected
