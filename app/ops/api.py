"""Routes for operators, outside the login: ``/metrics`` for Prometheus (its own token rule,
see ``scrape_refusal``), ``/livez`` and ``/readyz`` for load balancers and orchestrators."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.core.health import readiness, web_checks
from app.core.prometheus import REGISTRY, exposition, scrape_refusal
from app.ops.collector import DatabaseCollector

router = APIRouter(include_in_schema=False)
REGISTRY.register(DatabaseCollector())


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return scrape_refusal(request) or exposition(REGISTRY)


@router.get("/livez")
def livez() -> dict[str, str]:
    """The process answers; touches nothing else, so a slow database never restarts it."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    return await readiness(web_checks(), detail=scrape_refusal(request) is None)
