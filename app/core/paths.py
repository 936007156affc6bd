"""Where templates, static files and migrations are: in the wheel, or in a source checkout."""

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # the app package (app/core/paths.py)


@cache
def resource_dir(name: str) -> Path:
    """The folder ``name`` (templates, static, migrations) shipped with this installation."""
    for candidate in (_PACKAGE / "_bundle" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tunedeck resource folder {name!r} not found")
