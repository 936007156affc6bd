"""`tunedeck datasets upload | list`."""

import argparse
import json

from app.client import render
from app.client.api import FileInfo
from app.client.common import connect, err, existing, guarded, out


def file_line(info: FileInfo) -> str:
    """``file-…  sums.jsonl  40 rows: 36 train, 4 validation`` (the id first, for scripts)."""
    removed = f", {info['duplicates_removed']} duplicates removed" if info["duplicates_removed"] else ""
    counts = f"{info['rows']} rows: {info['train_rows']} train, {info['validation_rows']} validation"
    return f"{info['id']}  {info['filename']}  {counts}{removed}"


@guarded
def cmd_datasets_upload(args: argparse.Namespace) -> int:
    path = existing(args.file)
    with connect(args) as client:
        info = client.upload_file(
            path, validation_split=args.validation_split, split_seed=args.split_seed, private=args.private
        )
    out(file_line(info))
    return 0


@guarded
def cmd_datasets_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        files = client.list_files()
    if args.json:
        out(json.dumps(files, indent=2))
    elif not files:
        err("no datasets")
    else:
        headers = ["ID", "FILENAME", "ROWS", "TRAIN", "VALID", "OWNER", "CREATED"]
        rows = [
            [
                f["id"],
                f["filename"],
                str(f["rows"]),
                str(f["train_rows"]),
                str(f["validation_rows"]),
                f["owner"] or "-",
                render.timestamp(f["created_at"]),
            ]
            for f in files
        ]
        out(render.table(headers, rows))
    return 0
