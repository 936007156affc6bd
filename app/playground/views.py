"""HTML: the playground page, its leaderboard and batch table partials (refreshed with htmx)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.access import can_see
from app.auth.deps import CurrentUser
from app.core.catalog import served_models
from app.http.deps import SessionDep, StoreDep
from app.http.templates import templates
from app.playground import batch as batches
from app.playground import service

router = APIRouter(include_in_schema=False)


@router.get("/playground", response_class=HTMLResponse)
def playground_page(
    request: Request, session: SessionDep, store: StoreDep, user: CurrentUser, blind: bool = False
) -> Response:
    """Chat panes side by side (or blind A/B), the vote leaderboard and batch comparisons."""
    models = served_models(session, store, viewer_id=user.viewer_id)
    context = {
        "blind": blind,
        "models": models,
        "groups": service.model_groups(models),
        "defaults": service.default_models(models),
        "summary": service.vote_summary(session=session, viewer_id=user.viewer_id),
        "jobs": [j for j in service.recent_jobs(session=session) if can_see(j, user)],
    }
    return templates.TemplateResponse(request, "pages/playground.html", context)


@router.get("/playground/leaderboard", response_class=HTMLResponse)
def leaderboard(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    context = {"summary": service.vote_summary(session=session, viewer_id=user.viewer_id)}
    return templates.TemplateResponse(request, "partials/playground/leaderboard.html", context)


@router.get("/playground/batches/{batch_id}", response_class=HTMLResponse)
def batch_table(request: Request, session: SessionDep, user: CurrentUser, batch_id: str) -> Response:
    """A batch's progress and side-by-side answers; polls itself while the batch runs."""
    batch = batches.get_batch(session=session, batch_id=batch_id, viewer_id=user.viewer_id)
    context = {"batch": batch, "rows": batches.batch_rows(session=session, batch=batch)}
    return templates.TemplateResponse(request, "partials/playground/batch.html", context)
