"""Text for the terminal: the progress line, tables, durations. Pure functions, easy to test."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

BAR_WIDTH = 20


@dataclass(frozen=True)
class ProgressView:
    """What the progress line shows about a job at one moment."""

    status: str
    step: int
    total_steps: int | None
    fraction: float
    train_loss: float | None = None
    valid_loss: float | None = None
    eta_seconds: float | None = None


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#####.....]``; rounds down so the bar is full only when the job is."""
    filled = int(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a status line."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def progress_line(view: ProgressView) -> str:
    """``[######..............] step 12/40 30%  train 1.2345  valid 1.3456  ETA 1m05s``."""
    total = str(view.total_steps) if view.total_steps else "?"
    parts = [f"{bar(view.fraction)} step {view.step}/{total} {int(view.fraction * 100)}%"]
    if view.train_loss is not None:
        parts.append(f"train {loss(view.train_loss)}")
    if view.valid_loss is not None:
        parts.append(f"valid {loss(view.valid_loss)}")
    if view.status == "running" and view.eta_seconds is not None:
        parts.append(f"ETA {duration(view.eta_seconds)}")
    elif view.status != "running":
        parts.append(view.status)
    return "  ".join(parts)


def progress_cell(step: int, total_steps: int | None, fraction: float) -> str:
    """``12/40 30%`` for list tables; ``-`` before the worker has counted the steps."""
    if not total_steps:
        return "-"
    return f"{step}/{total_steps} {int(fraction * 100)}%"


def timestamp(unix: int | None) -> str:
    """Local time to the minute, which is what a person scanning a list needs."""
    return "-" if unix is None else datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is not padded."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)
