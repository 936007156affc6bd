"""Jinja2 templates and the filters the pages use."""

from datetime import UTC, datetime

from fastapi.templating import Jinja2Templates

from app.paths import resource_dir

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
