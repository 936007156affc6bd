"""What every client command shares: connecting, output, and turning failures into exit code 2.

Results go to stdout (ids first, for scripts); errors go to stderr with exit code 2 and the
API's own message, never a traceback. The API key is sent, never printed.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from app.client.api import DEFAULT_URL, ApiError, Client, Unreachable

HOW_TO_GET_A_KEY = (
    "create one on the server with `tunedeck api-key create --user USER --name cli`, "
    "or on the dashboard's Account page ({url}/account); then set TUNEDECK_API_KEY"
)

Command = Callable[[argparse.Namespace], int]


class UsageProblem(Exception):
    """Something wrong with what was typed, found before (or instead of) asking the server."""


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def report(exc: ApiError, url: str) -> None:
    """The API's message; a dataset's problems one per line, with their line numbers."""
    lines = [d for d in exc.details if "line" in d]
    if not lines:
        err(f"error: {exc.message}")
    else:
        err(f"error: {exc.total or len(lines)} problem(s) in the file:")
        for problem in lines:
            where = f"line {problem['line']}" if problem["line"] else "file"
            field = f"{problem['field']}: " if problem.get("field") else ""
            err(f"  {where}: {field}{problem['message']}")
        if exc.total and exc.total > len(lines):
            err(f"  (and {exc.total - len(lines)} more)")
    if exc.status == 401:
        err("to get an API key, " + HOW_TO_GET_A_KEY.format(url=url))


def guarded(command: Command) -> Command:
    """Every way a command can go wrong ends in a message on stderr and exit code 2, not a traceback."""

    @wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ApiError as exc:
            report(exc, server_url(args))
            return 2
        except Unreachable as exc:
            err(f"error: {exc}; is it running? (`tunedeck run`, or point --url / TUNEDECK_URL at it)")
            return 2
        except UsageProblem as exc:
            err(f"error: {exc}")
            return 2
        except KeyboardInterrupt:
            return 130  # Ctrl-C is an answer, not a crash

    return run


def server_url(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get("TUNEDECK_URL") or DEFAULT_URL).rstrip("/")


def connect(args: argparse.Namespace) -> Client:
    """A client for --url / TUNEDECK_URL with --api-key / TUNEDECK_API_KEY (read here: the key is
    the caller's, not the server's, so it is no part of app.core.config's settings)."""
    key = args.api_key or os.environ.get("TUNEDECK_API_KEY")
    if not key:
        how = HOW_TO_GET_A_KEY.format(url=server_url(args))
        raise UsageProblem(f"no API key: pass --api-key or set TUNEDECK_API_KEY; {how}")
    return Client(server_url(args), key)


def existing(path: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise UsageProblem(f"no such file: {path}")
    return file


def parse_hyperparameters(pairs: list[str]) -> dict[str, Any]:
    """``--hp key=value`` pairs; values read as JSON (numbers, true/false, lists) or kept as text."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageProblem(f"--hp takes key=value, e.g. --hp learning_rate=2e-4 (got {pair!r})")
        try:
            values[key.strip()] = json.loads(raw)
        except ValueError:
            values[key.strip()] = raw.strip()
    return values
