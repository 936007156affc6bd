"""The FastAPI application: REST API under /api/v1, HTML pages under /."""

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from app.auth import api as accounts_api
from app.auth import views as accounts_views
from app.auth.deps import current_user
from app.basemodels import api as models_api
from app.basemodels import views as models_views
from app.core.asgi import SecurityHeaders
from app.core.paths import resource_dir
from app.core.prometheus import CountRequests
from app.datasets import api as files_api
from app.datasets import views as datasets_views
from app.evals import api as evals_api
from app.evals import views as evals_views
from app.http.context import RequestContext
from app.http.errors import install_error_handlers
from app.http.limits import UploadLimit
from app.jobs import api as jobs_api
from app.jobs import views as jobs_views
from app.ops import api as ops_api
from app.playground import api as playground_api
from app.playground import views as playground_views
from app.presets import api as presets_api
from app.v1 import proxy as serving_proxy
from app.webhooks import api as webhooks_api
from app.webhooks import views as webhooks_views


def _docs(app: FastAPI) -> APIRouter:
    """The OpenAPI schema and its interactive docs, for signed-in users (a browser session is enough)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} API")

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} API")

    return router


def create_app() -> FastAPI:
    """Build the web application (routes, static files, error handlers)."""
    app = FastAPI(
        title="tunedeck",
        version="0.1.0",
        description="LoRA / QLoRA fine-tuning as a service: datasets, jobs, live metrics, adapters.",
        docs_url=None,  # served below, behind the login like everything else
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(accounts_views.public)
    app.include_router(ops_api.router)  # /metrics (its own token rule), /livez, /readyz
    app.include_router(accounts_views.router)
    signed_in = [Depends(current_user)]  # every route below needs a login or an API key
    for module in (
        accounts_api,
        files_api,
        jobs_api,
        models_api,
        presets_api,
        playground_api,
        evals_api,
        serving_proxy,
        jobs_views,
        datasets_views,
        models_views,
        playground_views,
        evals_views,
        webhooks_api,
        webhooks_views,
    ):
        app.include_router(module.router, dependencies=signed_in)
    app.include_router(_docs(app), dependencies=signed_in)
    app.mount("/static", StaticFiles(directory=str(resource_dir("static"))), name="static")
    install_error_handlers(app)
    app.add_middleware(UploadLimit)  # inside SecurityHeaders, so its 413s carry the headers too
    app.add_middleware(SecurityHeaders)
    app.add_middleware(CountRequests)  # outside the others: counts every answer, 413s included
    app.add_middleware(RequestContext)  # outermost: the request id covers everything below

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
