"""A real HTTP receiver for webhook tests: records every POST and can be told to fail."""

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery_id(self) -> str:
        return self.headers["x-tunedeck-delivery"]

    def signed_with(self, secret: str) -> bool:
        """Checks the signature the way a receiver's documentation tells it to."""
        signed = self.headers["x-tunedeck-timestamp"].encode() + b"." + self.body
        expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers["x-tunedeck-signature"])


class Receiver:
    """http.server on a free local port, in a thread; answers 204, or 500 while told to fail."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_first = 0  # answer 500 to this many POSTs first …
        self.always_fail = False  # … or to every one
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/tunedeck"

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[str]:
        with self._lock:
            return [r.headers["x-tunedeck-event"] for r in self.received]

    def _record(self, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self.received.append(Received(headers, body))
            failing = self.always_fail or len(self.received) <= self.fail_first
        return 500 if failing else 204

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._record({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler
