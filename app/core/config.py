"""Settings: the only module that reads the environment."""

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable, with defaults that make `make run` work on a fresh machine."""

    model_config = SettingsConfigDict(env_prefix="TUNEDECK_", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="SQLite file, broker and artifacts")
    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL; default sqlite:///<data_dir>/tunedeck.db",
    )
    redis_url: str | None = Field(
        None,
        validation_alias="REDIS_URL",
        description="Celery broker; default an embedded filesystem broker under <data_dir>",
    )
    artifacts_root: Path | None = Field(
        None,
        validation_alias="TUNEDECK_ARTIFACTS_DIR",
        description="Datasets, checkpoints, adapters and merged models; default <data_dir>/artifacts",
    )
    # --- Artifact store backend (app/storage.py, docs/storage.md) ---
    # "s3" keeps artifacts in an S3-compatible bucket so that workers and model servers on other
    # hosts share them; local copies are cached under <data_dir>/cache/s3. Credentials come from
    # the standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment (never read or logged here).
    storage: str = Field("local", pattern="^(local|s3)$", description="Artifact store: local or s3")
    s3_bucket: str | None = Field(None, description="Bucket for TUNEDECK_STORAGE=s3")
    s3_prefix: str = Field("", description="Key prefix inside the bucket, e.g. 'tunedeck/prod'")
    s3_endpoint_url: str | None = Field(None, description="For MinIO, moto, etc.; unset for AWS S3")
    s3_region: str = Field("us-east-1", description="The bucket's region")
    queue: str = Field("tunedeck", description="Celery queue the training tasks go to")
    model_cache_dir: Path = Field(
        Path.home() / ".cache" / "tunedeck" / "models",
        description="Where bundled base models are converted to safetensors, once per machine",
    )
    model_roots: str | None = Field(
        None,
        description="Folders (separated by os.pathsep) under which admins may register base models "
        "over the API; default: the model cache dir and <data_dir>/models",
    )
    max_upload_bytes: int = Field(100 * 1024 * 1024, description="Largest dataset upload")
    sse_poll_seconds: float = Field(0.5, description="How often a live stream checks for news")
    lease_seconds: float = Field(
        60.0, gt=0, description="A running attempt must renew its lease this often, or it is re-queued"
    )
    retry_backoff_seconds: float = Field(10.0, ge=0, description="Wait before the 2nd attempt; doubles after")
    max_attempts: int = Field(3, ge=1, le=20, description="Attempts a job gets before it fails for good")
    redispatch_after_seconds: float = Field(
        600.0,
        gt=0,
        description="A job still queued this long is sent again (a lost message, a broker restart)",
    )
    redis_visibility_timeout_seconds: float = Field(
        14 * 24 * 3600.0,
        gt=0,
        description="Redis re-delivers an unacknowledged message after this; keep it longer than any job",
    )
    redis_transport_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra kombu Redis transport options as JSON, e.g. '{\"unacked_restore_throttle\": 1}'",
    )
    model_server_url: str = Field(
        "http://127.0.0.1:8001",
        description="Where /v1 and the playground send chat requests: tunedeck's model server, or any "
        "OpenAI-compatible server (e.g. vLLM started with --enable-lora)",
    )
    model_server_api_key: str | None = Field(
        None, description="Bearer token for an external OpenAI-compatible server (never logged)"
    )
    judge_base_url: str | None = Field(
        None,
        description="An OpenAI-compatible endpoint (e.g. https://api.openai.com/v1) for score_model and "
        "label_model judges that tunedeck does not serve itself; set by an admin",
    )
    judge_api_key: str | None = Field(None, description="Bearer token for judge_base_url (never logged)")
    internal_token: str | None = Field(
        None,
        description="Token the web app uses with tunedeck's model server; by default one generated "
        "and kept in the database (set it when web and model server use different databases)",
    )
    cookie_secure: bool | None = Field(
        None, description="Mark the login cookie Secure; default: when the request came over https"
    )
    allowed_origins: str = Field(
        "",
        description=(
            "Comma-separated origins (e.g. 'https://tunedeck.example.com') the login form may be posted"
            " from besides the request's own host: for a proxy that rewrites Host"
        ),
    )
    serve_max_adapters: int = Field(8, ge=1, le=256, description="Adapters kept loaded per base model (LRU)")
    serve_max_merged: int = Field(2, ge=1, le=16, description="Merged models kept loaded (LRU)")
    serve_preload: str = Field(
        "default",
        description=(
            "Models the model server loads as it starts, before any request, comma-separated: "
            "'default' is default_base_model if it is registered; '' loads nothing until asked"
        ),
    )
    serve_batching: bool = Field(
        True, description="Batch concurrent replies on one model in one forward pass (False: take turns)"
    )
    fault_injection: str | None = Field(
        None, description="For fault tests only, e.g. 'oom_at_step=2,step_delay=0.1' (see app/faults.py)"
    )
    # --- Webhooks (app/webhooks): signed POSTs when jobs finish or raise alerts, retried with backoff ---
    webhook_max_attempts: int = Field(6, ge=1, le=50, description="POSTs a delivery gets before it fails")
    webhook_backoff_seconds: float = Field(
        5.0, ge=0, description="Wait before a delivery's 2nd POST; doubles after each failure, at most 1 h"
    )
    webhook_allowed_networks: str = Field(
        "",
        description=(
            "Comma-separated networks (e.g. '10.0.0.0/8,127.0.0.1/32') webhooks may reach although they"
            " are internal; every other loopback, private, link-local or reserved address is refused"
        ),
    )
    # --- Operations (app/ops, app/logs.py) ---
    metrics_token: str | None = Field(
        None,
        description="Bearer token Prometheus sends to /metrics; unset: /metrics answers loopback only",
    )
    log_format: str = Field("text", pattern="^(text|json)$", description="text, or json: one object a line")
    # --- Scheduling (app/jobs/scheduling.py): memory routing, priorities, per-user limits ---
    worker_memory_gib: float | None = Field(
        None,
        gt=0,
        description="Memory per device this worker advertises (and takes jobs up to); default: the CUDA "
        "device's total, or the machine's RAM on a CPU worker",
    )
    max_concurrent_jobs_per_user: int = Field(
        2,
        ge=0,
        description="Jobs one user may have running at once (0: no limit); admins can set it per user",
    )
    worker_lanes: str = Field(
        "train,short",
        pattern=r"^(train|short)(,(train|short))?$",
        description="What a worker takes: training jobs (train), merges, webhooks and batch compares "
        "(short), or both",
    )
    # --- `tunedeck run` (app/supervisor.py): children that die are started again, with backoff ---
    restart_limit: int = Field(
        5, ge=1, description="Exits of one child within the window after which it is not started again"
    )
    restart_window_seconds: float = Field(300.0, gt=0, description="The window restart_limit counts in")
    default_base_model: str = "smollm2-135m-instruct"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver we use spelled out."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'tunedeck.db').resolve()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url

    @property
    def artifacts_dir(self) -> Path:
        return (self.artifacts_root or self.data_dir / "artifacts").resolve()

    @property
    def model_root_dirs(self) -> list[Path]:
        """Where model folders registered over the API must lie, symlinks resolved."""
        roots = (
            [Path(part) for part in self.model_roots.split(os.pathsep) if part.strip()]
            if self.model_roots
            else [self.model_cache_dir, self.data_dir / "models"]
        )
        return [root.expanduser().resolve() for root in roots]

    @property
    def broker_dir(self) -> Path:
        return (self.data_dir / "broker").resolve()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache after changing the environment)."""
    return Settings()
