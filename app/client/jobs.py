"""`tunedeck jobs create | list | get | cancel | watch`."""

import argparse
import json
import sys

from app.client import render
from app.client.api import TERMINAL, Client, Job
from app.client.common import connect, err, existing, guarded, out, parse_hyperparameters
from app.client.datasets import file_line
from app.client.watch import Display, watch


def _follow(client: Client, job_id: str) -> int:
    """Watch to the end: 0 when the job succeeded, 1 when it failed or was cancelled."""
    display = Display(sys.stdout, sys.stdout.isatty())
    try:
        state = watch(client, job_id, display)
    except KeyboardInterrupt:
        display.close()  # so that the message starts on its own line
        err(f"stopped watching; {job_id} carries on (`tunedeck jobs cancel {job_id}` stops it)")
        return 130
    finally:
        display.close()
    if state.status == "succeeded":
        out(f"{job_id} succeeded: fine-tuned model {state.fine_tuned_model}")
        return 0
    if state.status == "cancelled":
        err(f"{job_id} was cancelled" + (f": {state.error}" if state.error else ""))
    else:
        err(f"{job_id} failed: {state.error or 'the server gave no reason'}")
    return 1


@guarded
def cmd_jobs_create(args: argparse.Namespace) -> int:
    hyperparameters = parse_hyperparameters(args.hp or [])
    path = existing(args.file) if args.file else None
    with connect(args) as client:
        if args.preset:
            hyperparameters = {**client.find_preset(args.preset)["hyperparameters"], **hyperparameters}
        training_file = args.training_file
        if path is not None:
            uploaded = client.upload_file(path)
            err(f"uploaded {path} as {file_line(uploaded)}")
            training_file = uploaded["id"]
        body = {
            "model": args.model,
            "training_file": training_file,
            "validation_file": args.validation_file,
            "suffix": args.suffix,
            "seed": args.seed,
            "hyperparameters": hyperparameters,
            "private": args.private,
        }
        job = client.create_job({key: value for key, value in body.items() if value is not None})
        out(job["id"])
        return _follow(client, job["id"]) if args.watch else 0


def _status(job: Job) -> str:
    return "cancelling" if job["cancel_requested"] and job["status"] not in TERMINAL else job["status"]


def _job_row(job: Job) -> list[str]:
    progress = job["progress"]
    return [
        job["id"],
        _status(job),
        job["model"],
        render.progress_cell(progress["step"], progress["total_steps"], progress["fraction"]),
        render.loss(job["train_loss"]),
        render.loss(job["valid_loss"]),
        job["owner"] or "-",
        render.timestamp(job["created_at"]),
    ]


@guarded
def cmd_jobs_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        jobs = client.list_jobs(limit=args.limit, status=args.status, model=args.model, owner=args.owner)
    if args.json:
        out(json.dumps(jobs, indent=2))
    elif not jobs:
        err("no jobs")
    else:
        headers = ["ID", "STATUS", "MODEL", "PROGRESS", "TRAIN LOSS", "VALID LOSS", "OWNER", "CREATED"]
        out(render.table(headers, [_job_row(job) for job in jobs]))
    return 0


def _job_details(job: Job) -> str:
    progress = job["progress"]
    fields = {
        "id": job["id"],
        "status": _status(job),
        "model": job["model"],
        "fine-tuned model": job["fine_tuned_model"] or "-",
        "training file": job["training_file"],
        "validation file": job["validation_file"] or "(split of the training file)",
        "progress": render.progress_cell(progress["step"], progress["total_steps"], progress["fraction"]),
        "train loss": render.loss(job["train_loss"]),
        "valid loss": render.loss(job["valid_loss"]),
        "owner": job["owner"] or "-",
        "created": render.timestamp(job["created_at"]),
        "finished": render.timestamp(job["finished_at"]),
    }
    if job["error"]:
        fields["error"] = job["error"]["message"]
    return "\n".join(f"{name + ':':<18}{value}" for name, value in fields.items())


@guarded
def cmd_jobs_get(args: argparse.Namespace) -> int:
    with connect(args) as client:
        job = client.get_job(args.job_id)
    out(json.dumps(job, indent=2) if args.json else _job_details(job))
    return 0


@guarded
def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with connect(args) as client:
        job = client.cancel_job(args.job_id)
    if job["status"] == "cancelled":
        out(f"{job['id']} cancelled")
    else:
        out(f"{job['id']}: cancel requested; it stops within a few steps (status: {job['status']})")
    return 0


@guarded
def cmd_jobs_watch(args: argparse.Namespace) -> int:
    with connect(args) as client:
        return _follow(client, args.job_id)
