"""The OpenAI API's error shape, ``{"error": {"message", "type", "param", "code"}}``, with nothing
else imported: middleware (and the model server) build their answers with it without loading
every service the way app.api.errors does."""

from typing import Any

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
