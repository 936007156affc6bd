"""Nothing a user sends blocks the event loop: while an upload is parsed (made slow on purpose
here, 3 s) a real `tunedeck web` process keeps answering /livez, and the other users' pages."""

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.accounts import PASSWORD
from tests.e2e.support import TUNEDECK, free_port, server_process

pytestmark = pytest.mark.slow

PARSE_DELAY_S = 3.0
ROWS = "".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(50)).encode()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("event-loop")
    data = ["--data-dir", str(root / "data")]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "TUNEDECK_DATA_DIR": str(root / "data"),
        "TUNEDECK_FAULT_INJECTION": f"parse_delay={PARSE_DELAY_S}",
    }

    def cli(*args: str) -> str:
        return subprocess.run([TUNEDECK, *args], env=env, capture_output=True, text=True, check=True).stdout

    cli("create-admin", *data, "--username", "admin", "--password", PASSWORD)
    key = cli("api-key", "create", *data, "--user", "admin", "--name", "t").strip().splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [TUNEDECK, "web", *data, "--port", str(port)]
    with server_process(command, env, root / "web.log", url, "tunedeck web"):
        yield url, {"Authorization": f"Bearer {key}"}


def _while_uploading(url: str, auth: dict[str, str], send: object) -> tuple[httpx.Response, list[float]]:
    """Run ``send()`` (an upload) in a thread; meanwhile time /livez and a page, every 0.1 s."""
    answer: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answer.append(send()))  # type: ignore[operator]
    thread.start()
    waits: list[float] = []
    time.sleep(0.3)  # the upload is in (the parse sleeps now)
    while thread.is_alive():
        started = time.monotonic()
        assert httpx.get(url + "/livez", timeout=10).status_code == 200
        assert httpx.get(url + "/api/v1/files", headers=auth, timeout=10).status_code == 200
        waits.append(time.monotonic() - started)
        time.sleep(0.1)
    thread.join()
    return answer[0], waits


def test_livez_and_other_requests_answer_while_an_upload_is_parsed(web: tuple[str, dict[str, str]]) -> None:
    url, auth = web
    for path, extra in (("/api/v1/files", {"data": {"purpose": "fine-tune"}}), ("/datasets", {})):

        def send(path: str = path, extra: dict[str, object] = extra) -> httpx.Response:
            files = {"file": ("rows.jsonl", ROWS)}
            return httpx.post(url + path, files=files, headers=auth, timeout=60, **extra)  # type: ignore[arg-type]

        started = time.monotonic()
        answer, waits = _while_uploading(url, auth, send)
        assert answer.status_code in (200, 303), (path, answer.text[:300])
        assert time.monotonic() - started >= PARSE_DELAY_S  # the parse was slow, on purpose
        # every probe came back while the parse went on: far sooner than the parse took
        assert len(waits) >= 5 and max(waits) < PARSE_DELAY_S / 2, (path, waits)
