"""Per-request log context: a request id on every web request, and the job id when the path
names a job, so each log line of a request can be found by either."""

import re
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logs import job_id_var, request_id_var

JOB_IN_PATH = re.compile(r"\bftjob-[0-9A-Za-z]+")
# A proxy's own id is kept when it is plain, so its access log and ours line up.
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class RequestContext:
    """ASGI middleware: sets the request (and job) id for the request's logs, and answers the
    request id in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = Headers(scope=scope).get("x-request-id", "")
        request_id = sent if VALID_REQUEST_ID.match(sent) else uuid.uuid4().hex[:16]
        job = JOB_IN_PATH.search(str(scope.get("path", "")))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        request_token = request_id_var.set(request_id)
        job_token = job_id_var.set(job.group(0) if job else None)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            job_id_var.reset(job_token)
            request_id_var.reset(request_token)
