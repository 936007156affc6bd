"""Request bodies over the upload limit are refused while they arrive, not after.

Starlette spools a multipart body to memory and temp files before a route runs, so the route's
own size check comes too late to keep memory and disk flat. This middleware answers 413 before
reading a body whose Content-Length is too large, and stops a chunked body as soon as the bytes
it has passed on exceed the limit.
"""

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.asgi import error_body
from app.core.config import get_settings

# Room for the multipart boundaries, part headers and small form fields around the file.
MULTIPART_ALLOWANCE = 64 * 1024


def describe_limit(limit: int) -> str:
    """``100 MiB``, or the exact byte count when the limit is not a whole number of MiB."""
    mib = 1 << 20
    return f"{limit // mib} MiB" if limit >= mib and limit % mib == 0 else f"{limit} bytes"


class UploadTooLarge(HTTPException):
    """The request body passed the upload limit (413); raised from ``receive`` mid-body."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"the request body is larger than the {describe_limit(limit)} upload limit "
            "(TUNEDECK_MAX_UPLOAD_BYTES); upload a smaller file",
        )


class UploadLimit:
    """Refuse bodies over TUNEDECK_MAX_UPLOAD_BYTES (plus a multipart allowance) as they stream in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_upload_bytes
        allowed = limit + MULTIPART_ALLOWANCE
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > allowed:
            await _refuse(scope, receive, send, UploadTooLarge(limit))
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowed:
                    raise UploadTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except UploadTooLarge as exc:  # raised where no exception handler turned it into a response
            if started:
                raise
            await _refuse(scope, receive, send, exc)


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: UploadTooLarge) -> None:
    # The unread rest of the body is the server's to discard (uvicorn reads and drops it), so the
    # client gets this answer instead of a connection reset.
    response = JSONResponse(error_body(str(exc.detail), status=413, code="file_too_large"), status_code=413)
    await response(scope, receive, send)
