"""A typed client of tunedeck's REST API, over httpx with an API key.

Responses stay plain JSON dicts (typed as TypedDicts) so that ``--json`` prints exactly what
the API said, and a newer server's extra fields pass through untouched.
"""

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypedDict

import httpx

from app.client.sse import SseMessage, parse_sse

DEFAULT_URL = "http://127.0.0.1:8000"
JOBS = "/api/v1/fine_tuning/jobs"
FILES = "/api/v1/files"
PRESETS = "/api/v1/presets"
STATUSES = ("validating_files", "queued", "running", "retrying", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")
PAGE_SIZE = 100  # the most GET /fine_tuning/jobs returns at once
# The server sends a keep-alive every 15 s; a silence this long means the connection is dead.
STREAM_READ_TIMEOUT = 45.0


class Progress(TypedDict):
    step: int
    total_steps: int | None
    fraction: float
    eta: int | None


class JobError(TypedDict):
    code: str
    message: str
    param: str | None


class Job(TypedDict):
    id: str
    status: str
    model: str
    created_at: int
    finished_at: int | None
    fine_tuned_model: str | None
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    progress: Progress
    epoch: float | None
    train_loss: float | None
    valid_loss: float | None
    error: JobError | None
    cancel_requested: bool
    owner: str | None


class FileInfo(TypedDict):
    id: str
    filename: str
    format: str
    rows: int
    train_rows: int
    validation_rows: int
    duplicates_removed: int
    created_at: int
    owner: str | None
    private: bool


class Preset(TypedDict):
    id: str
    name: str
    hyperparameters: dict[str, Any]


class ApiError(Exception):
    """The API refused a request; ``message`` is its own words, ``details`` its per-item problems."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]], total: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.total = total


class Unreachable(Exception):
    """Nothing (or nothing sane) answered at the URL: refused, unresolvable, timed out, cut off."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"tunedeck isn't reachable at {url} ({reason})")
        self.url = url
        self.reason = reason


def _raise_for_error(response: httpx.Response) -> None:
    """Turn an error response into ApiError, read from the API's ``{"error": {...}}`` shape."""
    if not response.is_error:
        return
    try:
        error = response.json()["error"]
        message = str(error["message"])
        details, total = list(error.get("details") or []), error.get("total")
    except (ValueError, KeyError, TypeError):  # not our API: a proxy's page, say
        message, details, total = f"HTTP {response.status_code}: {response.text[:200]}", [], None
    raise ApiError(response.status_code, message, details, total)


class Client:
    """One tunedeck server, one API key. Use as a context manager to close its connections."""

    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "tunedeck-cli"},
            timeout=timeout,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(self.url, str(exc) or type(exc).__name__) from None
        _raise_for_error(response)
        return response.json()

    # -- jobs --------------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> Job:
        """POST a job: ``model``, ``training_file`` and optional ``hyperparameters`` and the rest."""
        job: Job = self._call("POST", JOBS, json=body)
        return job

    def get_job(self, job_id: str) -> Job:
        job: Job = self._call("GET", f"{JOBS}/{job_id}")
        return job

    def cancel_job(self, job_id: str) -> Job:
        job: Job = self._call("POST", f"{JOBS}/{job_id}/cancel")
        return job

    def list_jobs(self, *, limit: int = 20, **filters: str | None) -> list[Job]:
        """Newest first, up to ``limit``, paging past the API's 100 per request."""
        params = {key: value for key, value in filters.items() if value}
        jobs: list[Job] = []
        while len(jobs) < limit:
            page = self._call("GET", JOBS, params={**params, "limit": min(PAGE_SIZE, limit - len(jobs))})
            jobs += page["data"]
            if not page["has_more"] or not page["data"]:
                break
            params["after"] = page["data"][-1]["id"]
        return jobs

    def stream_job(self, job_id: str, last_event_id: str | None = None) -> Iterator[SseMessage]:
        """The job's live messages (``status``, ``metrics``, ``events``, ``end``) from a cursor."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT)
        try:
            with self._http.stream("GET", f"{JOBS}/{job_id}/stream", headers=headers, timeout=timeout) as r:
                if r.is_error:
                    r.read()
                    _raise_for_error(r)
                yield from parse_sse(r.iter_lines())
        except httpx.TransportError as exc:
            raise Unreachable(self.url, str(exc) or type(exc).__name__) from None

    # -- files and presets -------------------------------------------------------------------

    def upload_file(
        self, path: Path, *, validation_split: float = 0.1, split_seed: int = 42, private: bool = False
    ) -> FileInfo:
        """Upload a JSON, JSONL or CSV dataset; the server validates every row (422 lists problems)."""
        form = {
            "purpose": "fine-tune",
            "validation_split": str(validation_split),
            "split_seed": str(split_seed),
            "private": "true" if private else "false",
        }
        with path.open("rb") as handle:
            info: FileInfo = self._call("POST", FILES, files={"file": (path.name, handle)}, data=form)
        return info

    def list_files(self, limit: int = 1000) -> list[FileInfo]:
        files: list[FileInfo] = self._call("GET", FILES, params={"limit": limit})["data"]
        return files

    def find_preset(self, name: str) -> Preset:
        """A preset by id or (case-insensitive) name; ApiError 404 listing the choices otherwise."""
        presets: list[Preset] = self._call("GET", PRESETS)["data"]
        for preset in presets:
            if name in (preset["id"], preset["name"]) or name.casefold() == preset["name"].casefold():
                return preset
        known = ", ".join(repr(p["name"]) for p in presets)
        raise ApiError(404, f"no preset named {name!r}; there are {known}", [], None)
