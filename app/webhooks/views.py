"""HTML: /account/webhooks — your hooks, a form to add one, and each hook's recent deliveries."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from app.auth.access import log_action
from app.auth.deps import CurrentUser
from app.core.errors import Forbidden
from app.core.tables import SUBSCRIBABLE_EVENTS, WebhookScope
from app.http.deps import SessionDep, commit
from app.http.templates import templates
from app.webhooks import service

router = APIRouter(include_in_schema=False)

PAGE = "/account/webhooks"
RECENT_DELIVERIES = 5


def _page(
    request: Request,
    session: Session,
    user: CurrentUser,
    *,
    new_secret: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    hooks = service.list_webhooks(session=session, user=user)
    context = {
        "hooks": hooks,
        "deliveries": {
            h.id: service.list_deliveries(session=session, hook_id=h.id, limit=RECENT_DELIVERIES)
            for h in hooks
        },
        "events": [e.value for e in SUBSCRIBABLE_EVENTS],
        "new_secret": new_secret,
        "error": error,
    }
    return templates.TemplateResponse(request, "pages/webhooks.html", context, status)


@router.get(PAGE, response_class=HTMLResponse)
def webhooks_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    return _page(request, session, user)


@router.post(PAGE, response_class=HTMLResponse)
def create_webhook(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    url: Annotated[str, Form(max_length=2000)],
    events: Annotated[list[str], Form()] = [],  # noqa: B006  (FastAPI copies form defaults)
    scope: Annotated[WebhookScope, Form()] = WebhookScope.mine,
) -> Response:
    try:
        hook, secret = service.create_webhook(session=session, user=user, url=url, events=events, scope=scope)
    except (service.WebhookInvalid, Forbidden) as exc:
        session.rollback()
        status = 403 if isinstance(exc, Forbidden) else 422
        return _page(request, session, user, error=str(exc), status=status)
    log_action(session, request, user, "webhook_created", "webhook", hook.id, url=hook.url, scope=hook.scope)
    commit(session)
    return _page(request, session, user, new_secret=secret)


@router.post(PAGE + "/{hook_id}/delete")
def delete_webhook(request: Request, session: SessionDep, user: CurrentUser, hook_id: str) -> Response:
    hook = service.get_webhook(session=session, hook_id=hook_id, user=user)
    service.delete_webhook(session=session, hook=hook)
    log_action(session, request, user, "webhook_deleted", "webhook", hook_id, url=hook.url)
    commit(session)
    return RedirectResponse(PAGE, status_code=303)


@router.post(PAGE + "/{hook_id}/test")
def test_webhook(session: SessionDep, user: CurrentUser, hook_id: str) -> Response:
    hook = service.get_webhook(session=session, hook_id=hook_id, user=user)
    service.ping(session=session, hook=hook)
    commit(session)  # a short-lane worker sends it at once; the page shows it pending until then
    return RedirectResponse(PAGE, status_code=303)


@router.post(PAGE + "/deliveries/{delivery_id}/redeliver")
def redeliver(session: SessionDep, user: CurrentUser, delivery_id: str) -> Response:
    delivery = service.get_delivery(session=session, delivery_id=delivery_id, user=user)
    service.redeliver(session=session, delivery=delivery)
    commit(session)
    return RedirectResponse(PAGE, status_code=303)
