"""Logging for every tunedeck process, configured in one place.

``TUNEDECK_LOG_FORMAT=json`` turns each record into one JSON object per line (``ts``, ``level``,
``logger``, ``message``, plus ``job_id`` and ``request_id`` when known) so a log shipper needs no
parsing rules; ``text`` (the default) stays readable on a terminal. Either way a filter masks
anything that looks like a secret, because an exception message or a library's debug line can
carry a header we never meant to log. The structure lives in ``logging.json`` beside this
module: ``tunedeck`` loads it here, and uvicorn loads the same file through ``--log-config``.
"""

import json
import logging
import logging.config
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.config import get_settings

CONFIG_FILE = Path(__file__).with_name("logging.json")
TEXT_FORMAT = "%(asctime)s tunedeck %(levelname)s %(message)s"

job_id_var: ContextVar[str | None] = ContextVar("tunedeck_job_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("tunedeck_request_id", default=None)

# (pattern, replacement): API keys, bearer tokens, Hugging Face tokens, our session cookie.
_SECRETS = [
    (re.compile(r"\btd-[A-Za-z0-9_\-]{6,}"), "td-***"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 ***"),
    (re.compile(r"\bhf_[A-Za-z0-9]{6,}"), "hf_***"),
    (re.compile(r"(?i)\b(tunedeck_session=)[^;\s\"']+"), r"\1***"),
]


def redact(text: str) -> str:
    """``text`` with anything shaped like a tunedeck key, bearer token or HF token masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Masks secrets in the message, its arguments and the traceback before any handler writes.

    Defensive: no code of ours logs a key on purpose, but a failing HTTP call or a library can
    put an ``Authorization`` header or a key into an exception message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let the handler report it as logging does
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class AddContext(logging.Filter):
    """Copies the job and request ids of the running code onto the record (unless it has its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("job_id", job_id_var), ("request_id", request_id_var)):
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and job_id / request_id when set."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("job_id", "request_id"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def handler() -> logging.Handler:
    """The one handler every process logs through (``logging.json`` names this factory)."""
    out = logging.StreamHandler(sys.stderr)
    json_format = get_settings().log_format == "json"
    out.setFormatter(JsonFormatter() if json_format else logging.Formatter(TEXT_FORMAT))
    out.addFilter(AddContext())
    out.addFilter(RedactSecrets())
    return out


def configure_logging() -> None:
    """Apply ``logging.json`` to this process (the CLI, Celery workers; uvicorn reads the file).
    Python warnings become log records too, so they share the format and the redaction."""
    logging.config.dictConfig(json.loads(CONFIG_FILE.read_text()))
    logging.captureWarnings(True)


def guard(target: logging.Logger) -> None:
    """Add the redaction and context filters to handlers someone else set up (Celery's text mode)."""
    for existing in target.handlers:
        if not any(isinstance(f, RedactSecrets) for f in existing.filters):
            existing.addFilter(AddContext())
            existing.addFilter(RedactSecrets())


@contextmanager
def job_context(job_id: str | None) -> Iterator[None]:
    """Tag every record logged inside the block with ``job_id``."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)
