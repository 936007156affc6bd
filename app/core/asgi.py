"""What both servers (the web app and the model server) put on every answer: the OpenAI API's
error shape, ``{"error": {"message", "type", "param", "code"}}``, and the security headers (a
content security policy that allows only our own scripts, no MIME sniffing, no framing)."""

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
}


def error_body(
    message: str, *, status: int, param: str | None = None, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    error = {
        "message": message,
        "type": ERROR_TYPES.get(status, "api_error"),
        "param": param,
        "code": code,
    }
    return {"error": error | extra}


CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # uPlot and htmx set element styles
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
_JSON = (b"content-type", b"application/json")
_NO_STORE = [(b"cache-control", b"no-store")]
_INTERNAL_ERROR = json.dumps(
    error_body(
        "Internal server error: the request failed on our side and was logged.",
        status=500,
        code="internal_error",
    )
).encode()
# FastAPI's interactive docs load Swagger UI / ReDoc with inline scripts: they keep the rest.
_NO_CSP = ("/docs", "/redoc")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with_csp = not str(scope.get("path", "")).startswith(_NO_CSP)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in HEADERS if n not in present]
                if with_csp and b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CSP.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # A bug: Starlette's outermost error middleware would answer a bare 500 without our
            # headers. Answer it here, with them, and re-raise so the error is still logged.
            if not started:
                await send_with_headers(
                    {"type": "http.response.start", "status": 500, "headers": [_JSON, *_NO_STORE]}
                )
                await send_with_headers({"type": "http.response.body", "body": _INTERNAL_ERROR})
            raise
