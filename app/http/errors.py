"""Errors as the OpenAI API shapes them: ``{"error": {"message", "type", "param", "code"}}``.

Errors map to answers here, once, for JSON and HTML routes alike, by their core class
(app/core/errors.py): this module knows no domain.
"""

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.asgi import error_body
from app.core.errors import NotAuthenticated, TunedeckError
from app.http.templates import templates


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith(("/api/", "/v1/")) or "text/html" not in request.headers.get("accept", "")


def _respond(request: Request, status: int, body: dict[str, Any]) -> Response:
    if _wants_json(request):
        return JSONResponse(body, status_code=status)
    context = {"status": status, "error": body["error"]}
    return templates.TemplateResponse(request, "pages/error.html", context, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into 4xx answers: any TunedeckError by what it
    carries (status, param, code, details), request validation, and Starlette's HTTP errors."""

    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if not _wants_json(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            login = "/login?" + urlencode({"next": target})
            if request.headers.get("HX-Request"):
                return Response(status_code=401, headers={"HX-Redirect": login})
            return RedirectResponse(login, status_code=303)
        body = error_body(str(exc), status=401, code=exc.code)
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(TunedeckError)
    async def _tunedeck(request: Request, exc: TunedeckError) -> Response:
        body = error_body(str(exc), status=exc.status, param=exc.param, code=exc.code, **exc.details())
        return _respond(request, exc.status, body)

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
