"""CSV exports cannot run formulas in a spreadsheet: every cell a spreadsheet would evaluate gets a
leading quote, whether it came from a prompt, a model's name or a model's answer. (The whole batch
export through a served model: tests/playground/test_playground.py.)"""

import csv
import io

from app.playground.exports import to_csv
from app.playground.schemas import BatchCell, BatchRow

FORMULAS = ["=1+1", "+1+1", "-1+1", "@SUM(A1:A2)", "\t=cmd|' /C calc'!A0", '\r=HYPERLINK("http://x")']


def test_every_formula_looking_cell_is_neutralised() -> None:
    models = ["=evil-model", "plain"]
    rows = [
        BatchRow(
            prompt_index=i,
            prompt=formula,
            outputs={
                "=evil-model": BatchCell(output=formula, latency_s=0.1),
                "plain": BatchCell(output="fine", latency_s=0.1),
            },
        )
        for i, formula in enumerate(FORMULAS)
    ]
    table = list(csv.reader(io.StringIO(to_csv(models, rows), newline="")))
    assert table[0] == ["prompt", "'=evil-model", "plain"]
    for line, formula in zip(table[1:], FORMULAS, strict=True):
        assert line == ["'" + formula, "'" + formula, "fine"]
    cells = [cell for line in table for cell in line]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
