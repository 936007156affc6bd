"""A batch's answers as CSV (safe to open in a spreadsheet) and as JSON lines."""

import csv
import io
import json

from app.playground.schemas import BatchRow

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """Prefix a quote to text a spreadsheet would run as a formula (CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def to_csv(models: list[str], rows: list[BatchRow]) -> str:
    """Columns: prompt, then one per model; every cell neutralised."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([neutralise(c) for c in ["prompt", *models]])
    for row in rows:
        cells = [row.prompt, *(row.outputs[m].output or "" for m in models)]
        writer.writerow([neutralise(c) for c in cells])
    return out.getvalue()


def to_jsonl(models: list[str], rows: list[BatchRow]) -> str:
    """One object per prompt: ``{"prompt", "outputs": {model: text}}``."""
    lines = (
        json.dumps(
            {"prompt": row.prompt, "outputs": {m: row.outputs[m].output for m in models}}, ensure_ascii=False
        )
        for row in rows
    )
    return "".join(line + "\n" for line in lines)
