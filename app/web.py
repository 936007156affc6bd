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


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


templates.env.filters["ago"] = _ago
templates.env.filters["iso"] = _iso
templates.env.filters["num"] = _num
