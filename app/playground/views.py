"""HTML: the playground page, its leaderboard and batch table partials (refreshed with htmx)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.access import can_see
from app.auth.deps import CurrentUser
from app.core.catalog import served_models
from app.evals.api import visible_runs
from app.evals.service import model_scores
from app.http.deps import SessionDep, StoreDep, commit
from app.http.templates import templates
from app.playground import batch as batches
from app.playground import service

router = APIRouter(include_in_schema=False)


def _eval_scores(session: SessionDep, user: CurrentUser) -> dict[str, object]:
    """The latest evals' scores per model, for the leaderboard beside the votes."""
    evals, scores = model_scores(session, visible_runs(user))
    judged = {
        s.model: s for s in service.vote_summary(session=session, viewer_id=user.viewer_id, judged=True).data
    }
    people = service.vote_summary(session=session, viewer_id=user.viewer_id)
    rows: list[tuple[str, object]] = [(s.model, s) for s in people.data]  # people's ranking first,
    for model in [*judged, *scores]:  # then the models only a judge or an eval has seen
        if model not in {m for m, _ in rows}:
            rows.append((model, None))
    return {"score_evals": evals, "eval_scores": scores, "judged": judged, "board": rows}


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
        **_eval_scores(session, user),
        "jobs": [j for j in service.recent_jobs(session=session) if can_see(j, user)],
    }
    return templates.TemplateResponse(request, "pages/playground.html", context)


@router.get("/playground/leaderboard", response_class=HTMLResponse)
def leaderboard(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    context = {
        "summary": service.vote_summary(session=session, viewer_id=user.viewer_id),
        **_eval_scores(session, user),
    }
    return templates.TemplateResponse(request, "partials/playground/leaderboard.html", context)


@router.get("/playground/batches/{batch_id}", response_class=HTMLResponse)
def batch_table(
    request: Request, session: SessionDep, store: StoreDep, user: CurrentUser, batch_id: str
) -> Response:
    """A batch's progress and side-by-side answers; polls itself while the batch runs."""
    batch = batches.get_batch(session=session, batch_id=batch_id, viewer_id=user.viewer_id)
    context = {
        "batch": batch,
        "rows": batches.batch_rows(session=session, batch=batch),
        "models": served_models(session, store, viewer_id=user.viewer_id),
    }
    return templates.TemplateResponse(request, "partials/playground/batch.html", context)


@router.post("/playground/batches/{batch_id}/judge", response_class=HTMLResponse)
async def judge_batch(
    request: Request, session: SessionDep, store: StoreDep, user: CurrentUser, batch_id: str
) -> Response:
    """Queue a judge model on a finished batch; answers with the batch table (polling while judged)."""
    batch = batches.get_batch(session=session, batch_id=batch_id, viewer_id=user.viewer_id)
    model = (await request.form()).get("model")
    batches.request_judge(
        session=session, store=store, batch=batch, judge=str(model or ""), viewer_id=user.viewer_id
    )
    commit(session)
    return batch_table(request, session, store, user, batch_id)
