"""The model server's HTTP API, shaped like OpenAI's: ``GET /v1/models`` and
``POST /v1/chat/completions`` (with or without ``stream``). Run with ``tunedeck serve``."""

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from app.core.asgi import SecurityHeaders
from app.core.catalog import ServedModel, resolve, served_models
from app.core.config import get_settings
from app.core.credentials import internal_token, same_secret, user_for_api_key
from app.core.db import read_session, session_scope
from app.core.storage import get_store
from app.core.tables import Role
from worker.serving import ops
from worker.serving.engine import Engine, Result, Sampling

log = logging.getLogger(__name__)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _text(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, list) and any(part.get("type") != "text" for part in value):
            raise ValueError("only text content parts are supported")
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content)


class ChatRequest(BaseModel):
    model: str = Field(max_length=300)
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=200)]
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    stream: bool = False
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request")


class ChoicesRequest(BaseModel):
    """tunedeck's: how likely each choice is as the reply (multiple-choice evals, no generation)."""

    model: str = Field(max_length=300)
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=200)]
    choices: Annotated[list[Annotated[str, Field(max_length=2000)]], Field(min_length=2, max_length=26)]


def _error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status
    )


# Sent by the web app (with the internal token) to say whose request it passes on.
VIEWER_HEADER = "x-tunedeck-viewer"


class Unauthorized(Exception):
    pass


def viewer_of(request: Request) -> int | None:
    """Whose visibility applies: a user's id, or None for an admin. Callers authenticate with
    their own API key, or (the web app's /v1 pass-through) with the internal token plus the
    user it already authenticated in ``X-Tunedeck-Viewer``."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    if same_secret(secret, internal_token()):
        viewer = request.headers.get(VIEWER_HEADER, "admin")
        return None if viewer == "admin" else int(viewer) if viewer.isdigit() else -1
    with session_scope() as session:
        found = user_for_api_key(session=session, secret=secret)
        if found is None:
            raise Unauthorized("the API key is not valid (revoked, or never issued)")
        user = found[0]
        return None if user.role == Role.admin else user.id


def _model_entry(model: ServedModel) -> dict[str, Any]:
    return {
        "id": model.id,
        "object": "model",
        "created": int(model.created.timestamp()),
        "owned_by": "tunedeck",
        "kind": model.kind,
        "parent": None if model.kind == "base" else model.base,
        "job_id": model.job_id,
    }


def create_app(engine: Engine | None = None) -> FastAPI:
    settings = get_settings()
    engine = engine or Engine(
        settings.serve_max_adapters, settings.serve_max_merged, batching=settings.serve_batching
    )
    app = FastAPI(title="tunedeck model server", version="1", lifespan=_preloading(engine))
    app.state.engine = engine
    app.add_middleware(SecurityHeaders)  # nosniff and no framing here too
    metrics = ops.install(app, engine)  # /metrics, /livez, /readyz

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return _error(400, f"{where}: {first['msg']}", "invalid_request", where or None)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> Response:
        response = _error(401, str(exc), "invalid_api_key")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.get("/healthz")
    def health(request: Request) -> dict[str, Any]:
        """Up or not, for anyone; which models are loaded (private adapters too) only for an admin's
        key or the web app's internal token."""
        if "authorization" not in request.headers or viewer_of(request) is not None:
            return {"status": "ok"}
        return {"status": "ok", "loaded": engine.loaded(), "loading": engine.loading(), "stats": engine.stats}

    @app.get("/v1/tunedeck/models/{name:path}/state")
    def model_state(name: str, request: Request) -> Response:
        """tunedeck's: whether ``name`` answers at once ("ready") or its weights load first ("loading"
        under way, "cold" not started), so a pane can say so instead of waiting silently."""
        model = _served(request, name)
        if model is None:
            return _not_found(name)
        return JSONResponse({"model": name, "state": engine.state(model)})

    @app.get("/v1/models")
    def list_models(request: Request) -> dict[str, Any]:
        viewer = viewer_of(request)
        with read_session() as session:
            models = served_models(session, get_store(), viewer_id=viewer)
        return {"object": "list", "data": [_model_entry(m) for m in models]}

    @app.get("/v1/models/{name:path}")
    def get_model(name: str, request: Request) -> Response:
        model = _served(request, name)
        if model is None:
            return _not_found(name)
        return JSONResponse(_model_entry(model))

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request) -> Response:
        model = await run_in_threadpool(_served, request, body.model)
        if model is None:
            return _not_found(body.model, "model")
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        sampling = Sampling(
            temperature=body.temperature,
            top_p=body.top_p,
            max_new_tokens=body.max_completion_tokens or body.max_tokens or 256,
            seed=body.seed,
        )
        completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        if not body.stream:
            result = await run_in_threadpool(engine.generate, model, messages, sampling)
            metrics.record(result)
            return JSONResponse(_completion(completion_id, created, body.model, result))
        return StreamingResponse(
            _stream(engine, model, messages, sampling, completion_id, created, body.model, request, metrics),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/tunedeck/choices")
    async def choices(body: ChoicesRequest, request: Request) -> Response:
        """tunedeck's: each choice's log-probability as the reply to ``messages`` (summed over its
        tokens), for multiple-choice evals (MMLU-style): one forward pass per choice, no sampling."""
        model = await run_in_threadpool(_served, request, body.model)
        if model is None:
            return _not_found(body.model, "model")
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        scores = await run_in_threadpool(engine.choice_logprobs, model, messages, body.choices)
        return JSONResponse(
            {
                "object": "tunedeck.choices",
                "model": body.model,
                "choices": [
                    {"index": i, "text": text, "logprob": logprob, "tokens": tokens}
                    for i, (text, (logprob, tokens)) in enumerate(zip(body.choices, scores, strict=True))
                ],
            }
        )

    return app


def _preloading(engine: Engine) -> Any:
    """A lifespan that loads ``serve_preload``'s models in the background as the server starts (it
    answers meanwhile; a request for one of them waits for the load under way, not a second one)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        names = _preload_names()
        if names:
            threading.Thread(target=_preload, args=(engine, names), name="preload", daemon=True).start()
        yield

    return lifespan


def _preload_names() -> list[str]:
    settings = get_settings()
    names = [n.strip() for n in settings.serve_preload.split(",") if n.strip()]
    return [settings.default_base_model if n == "default" else n for n in names]


def _preload(engine: Engine, names: list[str]) -> None:
    for name in names:
        with read_session() as session:
            model = resolve(session, get_store(), name)
        if model is None:
            log.info("preload: %s is not registered; it loads when first asked for", name)
            continue
        try:
            engine.preload(model)
            log.info("preloaded %s", name)
        except Exception:
            log.exception("preload of %s failed; it loads when first asked for", name)


def _served(request: Request, name: str) -> ServedModel | None:
    """The model ``name`` as the caller may see it (a database read: call it off the event loop)."""
    viewer = viewer_of(request)
    with read_session() as session:
        return resolve(session, get_store(), name, viewer_id=viewer)


def _not_found(name: str, param: str | None = None) -> Response:
    return _error(
        404, f"The model '{name}' does not exist; GET /v1/models lists them", "model_not_found", param
    )


def _usage(result: Result) -> dict[str, Any]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def _timing(result: Result) -> dict[str, Any]:
    decode_s = result.total_s - (result.first_token_s or 0)
    return {
        "first_token_s": result.first_token_s,
        "total_s": result.total_s,
        "tokens_per_s": (result.completion_tokens - 1) / decode_s
        if result.completion_tokens > 1 and decode_s
        else None,
    }


def _completion(completion_id: str, created: int, model: str, result: Result) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": "stop" if result.finish_reason == "cancelled" else result.finish_reason,
            }
        ],
        "usage": _usage(result),
        "timing": _timing(result),
    }


def _chunk(completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> str:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


async def _stream(
    engine: Engine,
    model: ServedModel,
    messages: list[dict[str, str]],
    sampling: Sampling,
    completion_id: str,
    created: int,
    name: str,
    request: Request,
    metrics: ops.ServerMetrics,
) -> AsyncIterator[str]:
    """Tokens as they are generated; a client that goes away stops the generation."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | Result | BaseException] = asyncio.Queue()
    cancel = threading.Event()

    def work() -> None:
        try:
            result = engine.generate(
                model, messages, sampling, cancel, lambda t: loop.call_soon_threadsafe(pieces.put_nowait, t)
            )
            loop.call_soon_threadsafe(pieces.put_nowait, result)
        except BaseException as exc:  # reported to the client as an error chunk
            loop.call_soon_threadsafe(pieces.put_nowait, exc)

    thread = threading.Thread(target=work, name=f"generate-{completion_id}", daemon=True)
    thread.start()
    try:
        yield _chunk(completion_id, created, name, {"role": "assistant", "content": ""}, None)
        while True:
            try:
                item = await asyncio.wait_for(pieces.get(), timeout=1.0)
            except TimeoutError:
                if await request.is_disconnected():
                    cancel.set()
                    return
                continue
            if isinstance(item, str):
                yield _chunk(completion_id, created, name, {"content": item}, None)
            elif isinstance(item, Result):
                metrics.record(item)
                finish = "stop" if item.finish_reason == "cancelled" else item.finish_reason
                last = json.loads(_chunk(completion_id, created, name, {}, finish)[6:])
                last["usage"], last["timing"] = _usage(item), _timing(item)
                yield f"data: {json.dumps(last)}\n\n"
                yield "data: [DONE]\n\n"
                return
            else:
                error = {
                    "error": {
                        "message": f"generation failed: {item}",
                        "type": "server_error",
                        "code": "generation_failed",
                    }
                }
                yield f"data: {json.dumps(error)}\n\n"
                return
    finally:
        cancel.set()  # also when the client disconnected and the response was cancelled


app = create_app()
