"""Jinja2 templates and the filters the pages use."""

from datetime import UTC, datetime

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from app.core.paths import resource_dir

templates = Jinja2Templates(directory=str(resource_dir("templates")))


def _ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def _until(value: datetime | None) -> str:
    """'in 4m 10s' for an ETA."""
    if value is None:
        return "—"
    seconds = max(0, int((value - datetime.now(UTC)).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"in {hours}h {minutes:02d}m"
    return f"in {minutes}m {seconds:02d}s" if minutes else f"in {seconds}s"


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


templates.env.filters["ago"] = _ago
templates.env.filters["iso"] = _iso
templates.env.filters["until"] = _until
templates.env.filters["num"] = _num


def _user(request: Request) -> object:
    """The signed-in principal (None on the login page)."""
    return getattr(request.state, "principal", None)


def _csrf_token(request: Request) -> str:
    return str(getattr(_user(request), "csrf_token", "") or "")


def _csrf_field(request: Request) -> Markup:
    """The hidden input every state-changing form carries."""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(escape(_csrf_token(request)))


templates.env.globals["current_user"] = _user
templates.env.globals["csrf_token"] = _csrf_token
templates.env.globals["csrf_field"] = _csrf_field
