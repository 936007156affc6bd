"""Real processes for end-to-end tests: a `tunedeck run` instance and a browser-like SSE client."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

TUNEDECK = str(Path(sys.executable).parent / "tunedeck")
from tests.accounts import PASSWORD  # noqa: E402  (the password every test user has)

# In the environment of the shared `tunedeck run` (the ``embedded`` fixture): a secret that must
# never show up in a log, event, answer or file (tests/security/test_secrets.py).
HF_TOKEN = "hf_secretTunedeckSecurityTest0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Instance:
    """`tunedeck run` on its own data dir and port (web + Celery worker), stopped with Ctrl-C."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.serve_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        self.env.update({"TUNEDECK_DATA_DIR": str(data_dir), **(env or {})})
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_key = ""

    @property
    def auth(self) -> dict[str, str]:
        """Headers that authenticate as the instance's admin (user ``admin``, password PASSWORD)."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def ensure_admin(self) -> None:
        """An admin with a known password and an API key, made with the CLI a script would use."""
        if self.api_key:
            return
        data = ["--data-dir", str(self.data_dir)]
        made = subprocess.run(
            [TUNEDECK, "create-admin", *data, "--username", "admin", "--password", PASSWORD],
            env=self.env,
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0 or "is taken" in made.stderr, made.stderr
        key = self.cli("api-key", "create", *data, "--user", "admin", "--name", "tests")
        self.api_key = key.stdout.strip().splitlines()[-1]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TUNEDECK, *args], env=self.env, capture_output=True, text=True, check=True)

    def start(self, timeout: float = 300) -> "Instance":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ensure_admin()
        log = open(self.log_path, "wb")  # noqa: SIM115  (closed with the process)
        self.proc = subprocess.Popen(
            [
                TUNEDECK,
                "run",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--serve-port",
                str(self.serve_port),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"tunedeck run exited:\n{self.log()}"
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"tunedeck did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers=self.auth)

    def login(self, page: Any) -> None:
        login(page, self.url)


@dataclass
class SseMessage:
    id: str | None
    event: str
    data: Any


def sse_messages(
    url: str,
    last_event_id: str | None = None,
    read_timeout: float = 60,
    auth: dict[str, str] | None = None,
) -> Iterator[SseMessage]:
    """Parse a text/event-stream the way a browser's EventSource does."""
    headers = {"Accept": "text/event-stream", **(auth or {})}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    timeout = httpx.Timeout(10, read=read_timeout)
    with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
        response.raise_for_status()
        event, data, event_id = "message", [], None
        for line in response.iter_lines():
            if line == "":
                if data:
                    yield SseMessage(event_id, event, json.loads("\n".join(data)))
                event, data = "message", []
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("id:"):
                event_id = line[3:].strip()


def wait_for(predicate: Any, timeout: float, interval: float = 0.2, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {message}")


def healthy(url: str) -> bool:
    """Whether ``url``'s /healthz answers 200 right now."""
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def server_process(
    command: list[str], env: dict[str, str], log_path: Path, url: str, what: str, timeout: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """A tunedeck server (``web``, ``serve``) as its own process, answering at ``url`` before the
    body runs and stopped after it; its output goes to ``log_path`` (shown if it never answers)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for(lambda: healthy(url) or proc.poll() is not None, timeout=timeout, message=what)
        except TimeoutError:
            raise AssertionError(f"{what} did not answer:\n{log_path.read_text()[-3000:]}") from None
        assert proc.poll() is None, f"{what} exited:\n{log_path.read_text()[-3000:]}"
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if an open stream keeps a graceful stop waiting past 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


ADAPTER_CHECK = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel
base_dir, adapter_dir = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(base_dir)
ids = tok.apply_chat_template([{"role": "user", "content": "What is 3 plus 4?"}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
with torch.no_grad():
    base_logits = base(**ids).logits
    base_out = base.generate(**ids, max_new_tokens=8, do_sample=False)
tuned = PeftModel.from_pretrained(base, adapter_dir).eval()
with torch.no_grad():
    tuned_logits = tuned(**ids).logits
    tuned_out = tuned.generate(**ids, max_new_tokens=8, do_sample=False)
print(json.dumps({"max_logit_diff": (tuned_logits - base_logits).abs().max().item(),
                  "base": tok.decode(base_out[0]), "tuned": tok.decode(tuned_out[0])}))
"""


def check_adapter_in_fresh_process(base_dir: Path, adapter_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", ADAPTER_CHECK, str(base_dir), str(adapter_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def watch_like_a_browser(
    url: str, auth: dict[str, str], on_point: Any = None, give_up_after: float = 120
) -> tuple[list[dict[str, Any]], str | None, int]:
    """Follow a job's stream as EventSource does: when the connection drops (the server went
    away), wait and reconnect with the last event id, until the "end" event.

    Returns the metric points received, the final status and the number of reconnects.
    """
    points: list[dict[str, Any]] = []
    status, last_id, reconnects = None, None, 0
    deadline = time.monotonic() + give_up_after
    while time.monotonic() < deadline:
        try:
            for message in sse_messages(url, last_event_id=last_id, read_timeout=20, auth=auth):
                last_id = message.id or last_id
                if message.event == "status":
                    status = message.data["status"]
                elif message.event == "metrics":
                    points += message.data
                    if on_point:
                        on_point(points)
                elif message.event == "end":
                    return points, status, reconnects
        except (httpx.TransportError, httpx.HTTPStatusError):
            pass
        reconnects += 1
        time.sleep(0.5)
    raise TimeoutError(f"the stream did not end; {len(points)} points, last id {last_id}")


def login(page: Any, base_url: str, username: str = "admin", password: str = PASSWORD) -> None:
    """Log a Playwright page in through the login form, as a person would."""
    page.goto(base_url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
