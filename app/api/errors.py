"""Errors as the OpenAI API shapes them: ``{"error": {"message", "type", "param", "code"}}``.

Service exceptions map to status codes here, once, for JSON and HTML routes alike.
"""

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.error_shape import error_body
from app.auth.deps import Forbidden, NotAuthenticated
from app.auth.service import AccountError
from app.basemodels.service import ModelFolderInvalid, ModelPathNotAllowed
from app.datasets.parsing import DatasetInvalid
from app.datasets.service import NotFound
from app.jobs.service import AdviceBlocked, InvalidJobRequest, JobConflict
from app.presets.service import PresetConflict
from app.web import templates


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith(("/api/", "/v1/")) or "text/html" not in request.headers.get("accept", "")


def _respond(request: Request, status: int, body: dict[str, Any]) -> Response:
    if _wants_json(request):
        return JSONResponse(body, status_code=status)
    context = {"status": status, "error": body["error"]}
    return templates.TemplateResponse(request, "pages/error.html", context, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn service exceptions into 4xx responses."""

    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if not _wants_json(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            login = "/login?" + urlencode({"next": target})
            if request.headers.get("HX-Request"):
                return Response(status_code=401, headers={"HX-Redirect": login})
            return RedirectResponse(login, status_code=303)
        body = error_body(str(exc), status=401, code="invalid_api_key")
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return _respond(request, 403, error_body(str(exc), status=403, code="forbidden"))

    @app.exception_handler(AccountError)
    async def _account(request: Request, exc: AccountError) -> Response:
        body = error_body(str(exc), status=exc.status, param=exc.param, code="invalid_" + exc.param)
        return _respond(request, exc.status, body)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return _respond(request, 404, error_body(str(exc), status=404, code="not_found"))

    @app.exception_handler(DatasetInvalid)
    async def _dataset_invalid(request: Request, exc: DatasetInvalid) -> Response:
        details = [{"line": p.line, "field": p.field, "message": p.message} for p in exc.problems]
        body = error_body(
            str(exc),
            status=422,
            param="file",
            code="invalid_file",
            details=details,
            total=exc.total,
        )
        return _respond(request, 422, body)

    @app.exception_handler(InvalidJobRequest)
    async def _invalid_job(request: Request, exc: InvalidJobRequest) -> Response:
        return _respond(
            request,
            400,
            error_body(str(exc), status=400, param=exc.param, code="invalid_" + exc.param),
        )

    @app.exception_handler(AdviceBlocked)
    async def _blocked(request: Request, exc: AdviceBlocked) -> Response:
        details = [{"field": c.field, "code": c.code, "message": c.message} for c in exc.checks]
        param = exc.checks[0].field
        body = error_body(str(exc), status=422, param=param, code=exc.checks[0].code, details=details)
        return _respond(request, 422, body)

    @app.exception_handler(JobConflict)
    async def _conflict(request: Request, exc: JobConflict) -> Response:
        return _respond(request, 409, error_body(str(exc), status=409, code="invalid_state"))

    @app.exception_handler(PresetConflict)
    async def _preset_conflict(request: Request, exc: PresetConflict) -> Response:
        return _respond(request, 409, error_body(str(exc), status=409, param=exc.param, code=exc.code))

    @app.exception_handler(ModelFolderInvalid)
    async def _bad_model(request: Request, exc: ModelFolderInvalid) -> Response:
        return _respond(request, 400, error_body(str(exc), status=400, param="model", code="invalid_model"))

    @app.exception_handler(ModelPathNotAllowed)
    async def _bad_model_path(request: Request, exc: ModelPathNotAllowed) -> Response:
        return _respond(request, 400, error_body(str(exc), status=400, param="path", code="invalid_path"))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        details = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p not in ("body", "query", "path")),
                "message": str(err["msg"]).removeprefix("Value error, "),
            }
            for err in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details)
        param = (details[0]["field"] or None) if details else None
        return _respond(
            request,
            422,
            error_body(message, status=422, param=param, code="invalid_value", details=details),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        body = error_body(str(exc.detail), status=exc.status_code)
        response = _respond(request, exc.status_code, body)
        if isinstance(response, HTMLResponse | JSONResponse) and exc.headers:
            response.headers.update(exc.headers)
        return response
