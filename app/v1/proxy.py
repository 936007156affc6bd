"""``/v1`` on the web app passes requests through to the model server (or any OpenAI-compatible
server set in ``TUNEDECK_MODEL_SERVER_URL``), streaming included, so clients need one base URL."""

from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.auth.deps import CurrentUser
from app.core.config import get_settings
from app.core.credentials import internal_token

router = APIRouter(prefix="/v1", tags=["model server (pass-through)"])

# Hop-by-hop and length headers are the proxy's own business.
_DROP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}
TIMEOUT = httpx.Timeout(10.0, read=600.0)


def _not_found(name: str) -> JSONResponse:
    message = f"The model '{name}' does not exist; GET /v1/models lists them"
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    return JSONResponse(body, status_code=404)


async def _pass(request: Request, path: str, user: CurrentUser) -> Response:
    """Send ``/v1/<path>`` on. ``path`` is one of the routes below, with any model name in it
    percent-encoded as a single segment, so nothing a client sends reaches another route."""
    settings = get_settings()
    upstream = settings.model_server_url.rstrip("/")
    if upstream.endswith("/v1"):
        upstream = upstream[: -len("/v1")]
    headers = {
        k: v for k, v in request.headers.items() if k.lower() not in _DROP | {"authorization", "cookie"}
    }
    if settings.model_server_api_key:  # an external OpenAI-compatible server
        headers["authorization"] = f"Bearer {settings.model_server_api_key}"
    else:  # tunedeck's own model server: this app vouches for the user it authenticated
        headers["authorization"] = f"Bearer {await run_in_threadpool(internal_token)}"
        headers["x-tunedeck-viewer"] = "admin" if user.is_admin else str(user.user_id)
    http = httpx.AsyncClient(timeout=TIMEOUT)  # one per request: it lives as long as the stream
    outgoing = http.build_request(
        request.method,
        f"{upstream}/v1/{path}",
        params=request.query_params,
        headers=headers,
        content=await request.body(),
    )
    expected = urlsplit(upstream).path.rstrip("/") + f"/v1/{path}"
    if outgoing.url.raw_path.decode("ascii").partition("?")[0] != expected:
        await http.aclose()  # the URL would normalise to another route: never send it
        return _not_found(path)
    try:
        answer = await http.send(outgoing, stream=True)
    except httpx.TransportError:
        await http.aclose()
        message = (
            f"The model server at {upstream} is not reachable. `tunedeck run` starts one; "
            "on its own it is `tunedeck serve`, or set TUNEDECK_MODEL_SERVER_URL."
        )
        body = {
            "error": {
                "message": message,
                "type": "server_error",
                "param": None,
                "code": "model_server_unreachable",
            }
        }
        return JSONResponse(body, status_code=503)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        finally:  # also when the client went away: closing upstream stops the generation there
            await answer.aclose()
            await http.aclose()

    kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP | {"content-encoding"}}

    return StreamingResponse(relay(), status_code=answer.status_code, headers=kept)


@router.get("/models", summary="Every servable model: bases, adapters, checkpoints, merged models")
async def models(request: Request, user: CurrentUser) -> Response:
    return await _pass(request, "models", user)


@router.get("/models/{name:path}", summary="One servable model")
async def model(request: Request, name: str, user: CurrentUser) -> Response:
    # Model names never hold '/' (nor are '.' or '..'): such a "name" is a path trying to reach
    # the model server's other routes (``..%2F..%2Fhealthz``), and it names no model.
    if "/" in name or "\\" in name or name in (".", ".."):
        return _not_found(name)
    return await _pass(request, "models/" + quote(name, safe=":@"), user)


@router.post("/chat/completions", summary="Chat with any servable model (OpenAI shape; `stream` supported)")
async def chat(request: Request, user: CurrentUser) -> Response:
    return await _pass(request, "chat/completions", user)


@router.get(
    "/tunedeck/models/{name:path}/state",
    summary="tunedeck's: whether a model answers at once (ready), or loads its weights first (cold, loading)",
)
async def model_state(request: Request, name: str, user: CurrentUser) -> Response:
    if "/" in name or "\\" in name or name in (".", ".."):
        return _not_found(name)
    return await _pass(request, "tunedeck/models/" + quote(name, safe=":@") + "/state", user)
