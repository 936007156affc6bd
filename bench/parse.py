"""Dataset parsing time against file size, measured side by side in one run.

Uploads are parsed in the request (off the event loop); the time must grow linearly with the
file, or a large file becomes a way to keep a web worker busy for minutes. For JSON arrays and
JSONL of small instruction rows at 1, 10 and 100 MB this prints the parse time, the throughput
and the time per MB relative to the 1 MB file (1.0 everywhere = linear). ``--old`` also times
the array parser before the fix (it recounted newlines from the top of the file for every row)
on the smaller sizes, for the ratio.

    .venv/bin/python bench/parse.py
    .venv/bin/python bench/parse.py --sizes 1 10 --old
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.datasets import parsing  # noqa: E402

ROW = {"instruction": "Add the two numbers.", "input": "{a} and {b}", "output": "The sum is {c}."}


def make(size_mb: int, kind: str) -> bytes:
    """Instruction rows (about 90 bytes each) up to ``size_mb`` MB, as a JSON array or JSONL."""
    target = size_mb * 1_000_000
    lines, total, i = [], 0, 0
    while total < target:
        row = {k: v.format(a=i, b=i + 1, c=2 * i + 1) for k, v in ROW.items()}
        line = json.dumps(row)
        lines.append(line)
        total += len(line) + 2
        i += 1
    if kind == "jsonl":
        return ("\n".join(lines) + "\n").encode()
    return ("[\n" + ",\n".join(lines) + "\n]\n").encode()


def timed(data: bytes, name: str) -> tuple[float, int]:
    started = time.perf_counter()
    parsed = parsing.parse_dataset(data, name)
    return time.perf_counter() - started, len(parsed.rows)


def old_line(text: str, pos: int) -> int:
    """The array parser's line lookup before the fix: a count from the top of the file."""
    return text.count("\n", 0, pos) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], help="file sizes in MB")
    parser.add_argument("--old", action="store_true", help="also time the quadratic parser (1 and 2 MB)")
    args = parser.parse_args()
    print(f"{'format':<6} {'size':>7} {'rows':>9} {'parse s':>9} {'MB/s':>7} {'s/MB vs 1st':>12}")
    for kind, name in (("json", "rows.json"), ("jsonl", "rows.jsonl")):
        first = None
        for size in args.sizes:
            data = make(size, kind)
            seconds, rows = timed(data, name)
            per_mb = seconds / (len(data) / 1e6)
            first = first or per_mb
            print(
                f"{kind:<6} {len(data) / 1e6:6.1f}M {rows:>9,} {seconds:9.3f} "
                f"{len(data) / 1e6 / seconds:7.1f} {per_mb / first:12.2f}"
            )
    if args.old:
        print("\nthe array parser before the fix (newlines recounted from the top for every row):")
        new_line = parsing._line_counter  # the fixed parser's counter factory
        for size in (1, 2):
            data = make(size, "json")
            parsing._line_counter = lambda text: lambda pos: old_line(text, pos)  # type: ignore[assignment]
            try:
                old, _ = timed(data, "rows.json")
            finally:
                parsing._line_counter = new_line
            new, _ = timed(data, "rows.json")
            print(
                f"json   {len(data) / 1e6:6.1f}M  old {old:8.2f} s  new {new:6.3f} s  ratio {old / new:6.0f}x"
            )


if __name__ == "__main__":
    main()
