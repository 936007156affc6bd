"""The model server's operator routes: ``/metrics`` (same token rule as the web app's),
``/livez`` and ``/readyz`` (the database answers, the artifact store answers, and the
registered base models can be loaded from their folders)."""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import select

from app.core.db import read_session
from app.core.health import NotReady, check_database, check_storage, readiness
from app.core.prometheus import CountRequests, HttpMetrics, exposition, scrape_refusal
from app.core.tables import BaseModelRecord

TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class _EngineCollector(Collector):
    """Counters the engine keeps (``Engine.stats``) and what it has in memory, read per scrape."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        stats: dict[str, int] = getattr(self.engine, "stats", {})
        for key, doc in (
            ("requests", "Generations finished (completed, stopped or cancelled)"),
            ("cancelled", "Generations stopped because the client went away"),
            ("completion_tokens", "Tokens generated"),
        ):
            yield CounterMetricFamily(f"tunedeck_serve_{key}", doc, stats.get(key, 0))
        loaded: dict[str, list[str]] = self.engine.loaded()
        merged = loaded.pop("merged", [])
        yield GaugeMetricFamily("tunedeck_serve_loaded_base_models", "Base models in memory", len(loaded))
        adapters = sum(len(names) for names in loaded.values())
        yield GaugeMetricFamily("tunedeck_serve_loaded_adapters", "Adapters on base models", adapters)
        yield GaugeMetricFamily("tunedeck_serve_loaded_merged_models", "Merged models in memory", len(merged))


class ServerMetrics:
    """One model server's registry: HTTP requests, generation speed, the engine's counters."""

    def __init__(self, engine: Any) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.tokens_per_second = Histogram(
            "tunedeck_serve_generation_tokens_per_second",
            "Decoding speed of each finished generation (tokens after the first, per second)",
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine))

    def record(self, result: Any) -> None:
        """Note the speed of one finished generation (an engine ``Result``)."""
        decode_s = result.total_s - (result.first_token_s or 0.0)
        if result.completion_tokens > 1 and decode_s > 0:
            self.tokens_per_second.observe((result.completion_tokens - 1) / decode_s)


def base_models() -> dict[str, bool]:
    """Each registered base model, and whether its folder is there to load it from."""
    with read_session() as session:
        records = session.exec(select(BaseModelRecord)).all()
    return {record.id: (Path(record.path) / "config.json").is_file() for record in records}


def install(app: FastAPI, engine: Any) -> ServerMetrics:
    """Add the request counter and the operator routes to the model server ``app``."""
    metrics = ServerMetrics(engine)
    app.add_middleware(CountRequests, metrics=metrics.http)

    @app.get("/metrics", include_in_schema=False)
    def scrape(request: Request) -> Response:
        return scrape_refusal(request) or exposition(metrics.registry)

    @app.get("/livez", include_in_schema=False)
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        models: dict[str, bool] = {}

        def check_base_models() -> None:
            """Registered base models exist but none can be loaded: the models volume is missing."""
            models.update(base_models())
            if models and not any(models.values()):
                raise NotReady(f"no registered base model folder is present ({', '.join(sorted(models))})")

        checks = {"database": check_database, "storage": check_storage, "base_models": check_base_models}
        detail = scrape_refusal(request) is None
        return await readiness(checks, detail=detail, base_models=models)  # built after the checks ran

    return metrics
