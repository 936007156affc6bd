"""The argparse side of `tunedeck jobs …` and `tunedeck datasets …`, hooked into app.cli.

These commands are clients of a running tunedeck (its REST API, with an API key), so they
take --url / --api-key instead of --data-dir and never open the database.
"""

import argparse
from typing import TYPE_CHECKING

from app.client import datasets, jobs
from app.client.api import DEFAULT_URL, STATUSES
from app.client.common import Command

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _server_options() -> argparse.ArgumentParser:
    """--url and --api-key, shared by every client command (as a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    server = parent.add_argument_group("server")
    server.add_argument(
        "--url", default=None, help=f"the tunedeck to talk to (env TUNEDECK_URL; default {DEFAULT_URL})"
    )
    # No default from the environment here: argparse would show it in --help.
    server.add_argument(
        "--api-key",
        default=None,
        help="an API key (env TUNEDECK_API_KEY, which keeps it out of your shell history)",
    )
    return parent


def _command(
    group: "SubParsers", name: str, help_text: str, func: Command, parent: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = group.add_parser(name, help=help_text, parents=[parent])
    # app.cli.main reads args.data_dir for every command; a client has no data dir of its own.
    command.set_defaults(func=func, data_dir=None)
    return command


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_jobs(sub: "SubParsers", parent: argparse.ArgumentParser) -> None:
    group = sub.add_parser("jobs", help="fine-tuning jobs on a running tunedeck (REST API)").add_subparsers(
        dest="jobs_command", required=True
    )
    create = _command(group, "create", "start a fine-tuning job; prints its id", jobs.cmd_jobs_create, parent)
    create.add_argument("--model", required=True, help="base model id (see the Models page)")
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--training-file", metavar="FILE_ID", help="an uploaded dataset's id (file-…)")
    source.add_argument("--file", metavar="PATH", help="upload this JSON/JSONL/CSV file first and use it")
    create.add_argument("--validation-file", metavar="FILE_ID", help="default: the training file's split")
    create.add_argument("--suffix", help="a label for the result (letters, digits, . _ -)")
    create.add_argument("--seed", type=int, help="training seed (default 42)")
    create.add_argument("--preset", metavar="NAME", help="start from a preset's hyperparameters")
    create.add_argument(
        "--hp",
        action="append",
        metavar="KEY=VALUE",
        help="a hyperparameter, repeatable, over the preset's: --hp n_epochs=3 --hp learning_rate=2e-4",
    )
    create.add_argument("--private", action="store_true", help="only you and admins see the job")
    create.add_argument("--watch", action="store_true", help="then follow it, as `jobs watch` does")

    listing = _command(group, "list", "recent jobs, newest first", jobs.cmd_jobs_list, parent)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--model", help="only jobs on this base model")
    listing.add_argument("--owner", help="only jobs this username launched")
    listing.add_argument("--limit", type=_positive, default=20, help="how many (default 20)")
    listing.add_argument("--json", action="store_true", help="the API's JSON instead of a table")

    get = _command(group, "get", "one job's details", jobs.cmd_jobs_get, parent)
    get.add_argument("job_id", metavar="ID")
    get.add_argument("--json", action="store_true", help="the API's JSON")

    cancel = _command(group, "cancel", "stop a queued or running job", jobs.cmd_jobs_cancel, parent)
    cancel.add_argument("job_id", metavar="ID")

    watch = _command(
        group,
        "watch",
        "follow a job live (progress, losses, events); exit 0 if it succeeds, 1 if not",
        jobs.cmd_jobs_watch,
        parent,
    )
    watch.add_argument("job_id", metavar="ID")


def _add_datasets(sub: "SubParsers", parent: argparse.ArgumentParser) -> None:
    group = sub.add_parser("datasets", help="datasets on a running tunedeck (REST API)").add_subparsers(
        dest="datasets_command", required=True
    )
    upload = _command(
        group,
        "upload",
        "upload a JSON/JSONL/CSV dataset; prints its id",
        datasets.cmd_datasets_upload,
        parent,
    )
    upload.add_argument("file", metavar="FILE")
    upload.add_argument(
        "--validation-split", type=float, default=0.1, help="share held out for validation (default 0.1)"
    )
    upload.add_argument("--split-seed", type=int, default=42, help="seed of that split (default 42)")
    upload.add_argument("--private", action="store_true", help="only you and admins see it")
    listing = _command(group, "list", "uploaded datasets", datasets.cmd_datasets_list, parent)
    listing.add_argument("--json", action="store_true", help="the API's JSON instead of a table")


def add_client_commands(sub: "SubParsers") -> None:
    """Add `jobs` and `datasets` to the `tunedeck` command's subcommands."""
    parent = _server_options()
    _add_jobs(sub, parent)
    _add_datasets(sub, parent)
