"""HTML: the evals list with a form for a new eval, an eval's page (its runs, a form to run it
against 1–6 models at once, and a side-by-side compare of runs), and a run's page (scores per
criterion and every item's answer and verdicts, failures first on request)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, func, select

from app.auth.access import log_action
from app.auth.deps import CurrentUser, Principal
from app.core.catalog import served_models
from app.core.evaltemplates import METRICS
from app.core.tables import DatasetFile, Eval, EvalOutputItem, EvalRun, Job, JobStatus
from app.core.visibility import visible_clause
from app.evals import service
from app.evals.api import eval_for, run_for, visible_runs
from app.evals.schemas import EvalCreate, EvalInvalid, RunCreate
from app.http.deps import SessionDep, StoreDep, commit
from app.http.templates import templates

router = APIRouter(include_in_schema=False)
CRITERION_ROWS = 3  # criteria the new-eval form offers
MAX_MODELS = 6


def _list_context(session: Session, user: Principal) -> dict[str, Any]:
    evals = list(session.exec(select(Eval).order_by(col(Eval.created_at).desc()).limit(200)).all())
    counts = dict(
        session.exec(
            select(EvalRun.eval_id, func.count()).where(visible_runs(user)).group_by(col(EvalRun.eval_id))
        ).all()
    )
    return {"evals": evals, "runs": counts, "metrics": METRICS, "rows": range(CRITERION_ROWS), "form": {}}


@router.get("/evals", response_class=HTMLResponse)
def evals_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    return templates.TemplateResponse(request, "pages/evals.html", _list_context(session, user))


def _criterion(form: dict[str, str], i: int) -> dict[str, Any] | None:
    kind = form.get(f"c{i}_type", "")
    if not kind:
        return None
    name = form.get(f"c{i}_name", "").strip() or f"{kind} {i + 1}"
    given, reference = form.get(f"c{i}_input", ""), form.get(f"c{i}_reference", "")
    if kind == "string_check":
        return {
            "type": kind,
            "name": name,
            "input": given,
            "reference": reference,
            "operation": form.get(f"c{i}_operation", "eq"),
        }
    if kind == "text_similarity":
        return {
            "type": kind,
            "name": name,
            "input": given,
            "reference": reference,
            "evaluation_metric": form.get(f"c{i}_metric", "fuzzy_match"),
            "pass_threshold": _number(
                form.get(f"c{i}_threshold", ""), 0.5, f"criterion {i + 1}: pass threshold"
            ),
        }
    prompt = [{"role": "user", "content": form.get(f"c{i}_prompt", "")}]
    if kind == "label_model":
        labels = [x.strip() for x in form.get(f"c{i}_labels", "").split(",") if x.strip()]
        passing = [x.strip() for x in form.get(f"c{i}_passing", "").split(",") if x.strip()]
        return {
            "type": kind,
            "name": name,
            "model": form.get(f"c{i}_model", ""),
            "input": prompt,
            "labels": labels,
            "passing_labels": passing,
        }
    return {
        "type": kind,
        "name": name,
        "model": form.get(f"c{i}_model", ""),
        "input": prompt,
        "range": [0, 10],
        "pass_threshold": _number(form.get(f"c{i}_threshold", ""), 5.0, f"criterion {i + 1}: pass threshold"),
    }


def _number(text: str, default: float, what: str) -> float:
    if not text.strip():
        return default
    try:
        return float(text)
    except ValueError:
        raise EvalInvalid(f"{what} must be a number (got {text!r})", param="pass_threshold") from None


@router.post("/evals", response_class=HTMLResponse)
async def create_eval(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    fields = [f.strip() for f in form.get("item_fields", "").split(",") if f.strip()]
    try:
        if not fields:
            raise EvalInvalid("name the fields each item has, e.g. question, answer", param="item_fields")
        schema = {
            "type": "object",
            "properties": {f: {"type": "string"} for f in fields},
            "required": fields,
        }
        criteria = [c for i in range(CRITERION_ROWS) if (c := _criterion(form, i)) is not None]
        if not criteria:
            raise EvalInvalid("choose at least one testing criterion", param="testing_criteria")
        body = EvalCreate(
            name=form.get("name") or None,
            data_source_config={"type": "custom", "item_schema": schema, "include_sample_schema": True},
            testing_criteria=criteria,
        )
        row = service.create_eval(session=session, body=body, owner_id=user.user_id, owner=user.username)
    except EvalInvalid as problem:
        context = {**_list_context(session, user), "problem": str(problem), "form": form}
        return templates.TemplateResponse(request, "pages/evals.html", context, status_code=422)
    log_action(session, request, user, "eval_created", "eval", row.id, name=row.name)
    commit(session)
    return RedirectResponse(f"/evals/{row.id}", status_code=303)


def _eval_context(
    session: Session, store: Any, user: Principal, row: Eval, form: dict[str, Any] | None = None
) -> dict[str, Any]:
    runs = list(
        session.exec(
            select(EvalRun)
            .where(EvalRun.eval_id == row.id, visible_runs(user))
            .order_by(col(EvalRun.created_at).desc())
        ).all()
    )
    files = session.exec(
        select(DatasetFile)
        .where(DatasetFile.purpose == "evals", visible_clause(DatasetFile, user.viewer_id))
        .order_by(col(DatasetFile.created_at).desc())
    ).all()
    jobs = session.exec(
        select(Job)
        .where(col(Job.status) == JobStatus.succeeded, visible_clause(Job, user.viewer_id))
        .order_by(col(Job.finished_at).desc())
        .limit(50)
    ).all()
    fields = list(row.data_source_config.get("item_schema", {}).get("properties", {}))
    default_prompt = "{{item.%s}}" % (fields[0] if fields else "input")
    return {
        "eval": row,
        "runs": runs,
        "files": files,
        "jobs": jobs,
        "models": served_models(session, store, viewer_id=user.viewer_id),
        "form": form or {"prompt": default_prompt, "temperature": "0", "max_tokens": "128"},
        "max_models": MAX_MODELS,
    }


@router.get("/evals/{eval_id}", response_class=HTMLResponse)
def eval_page(
    request: Request, session: SessionDep, store: StoreDep, user: CurrentUser, eval_id: str
) -> Response:
    row = eval_for(session, eval_id, user)
    return templates.TemplateResponse(request, "pages/eval.html", _eval_context(session, store, user, row))


@router.post("/evals/{eval_id}/runs", response_class=HTMLResponse)
async def run_eval(
    request: Request, session: SessionDep, store: StoreDep, user: CurrentUser, eval_id: str
) -> Response:
    """One run per chosen model, all on the same items and settings."""
    row = eval_for(session, eval_id, user)
    raw = await request.form()
    models = [m for m in raw.getlist("models") if isinstance(m, str) and m]
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    try:
        if not 1 <= len(models) <= MAX_MODELS:
            raise EvalInvalid(f"choose 1 to {MAX_MODELS} models to evaluate", param="models")
        source_kind, _, source_id = form.get("source", "").partition(":")
        if source_kind == "file":
            source = {"type": "file_id", "id": source_id}
        elif source_kind == "job":
            source = {"type": "job_validation", "job_id": source_id}
        else:
            raise EvalInvalid(
                "choose the items: an eval items file or a job's validation rows", param="source"
            )
        template = [{"role": "user", "content": form.get("prompt", "")}]
        if form.get("system", "").strip():
            template.insert(0, {"role": "system", "content": form["system"]})
        sampling = {
            "temperature": _number(form.get("temperature", ""), 0.0, "temperature"),
            "max_completion_tokens": int(_number(form.get("max_tokens", ""), 128, "max tokens")),
        }
        runs = []
        for model in models:
            data_source: dict[str, Any] = {
                "type": "completions",
                "model": model,
                "source": source,
                "sampling_params": sampling,
            }
            if source_kind == "file" or form.get("prompt", "").strip():
                data_source["input_messages"] = {"type": "template", "template": template}
            body = RunCreate(data_source=data_source)
            runs.append(
                service.create_run(
                    session=session,
                    store=store,
                    row=row,
                    body=body,
                    viewer_id=user.viewer_id,
                    owner_id=user.user_id,
                    owner=user.username,
                )
            )
    except (EvalInvalid, ValueError) as problem:
        session.rollback()
        context = {**_eval_context(session, store, user, row, form), "problem": str(problem)}
        return templates.TemplateResponse(request, "pages/eval.html", context, status_code=422)
    for run in runs:
        log_action(
            session, request, user, "eval_run_created", "eval_run", run.id, eval_id=eval_id, model=run.model
        )
    commit(session)
    if len(runs) > 1:
        return RedirectResponse(
            f"/evals/{eval_id}/compare?" + "&".join(f"run={r.id}" for r in runs), status_code=303
        )
    return RedirectResponse(f"/evals/{eval_id}/runs/{runs[0].id}", status_code=303)


def _items(session: Session, run_id: str, failures: bool, by_score: bool) -> list[EvalOutputItem]:
    query = select(EvalOutputItem).where(EvalOutputItem.run_id == run_id)
    if failures:
        query = query.where(col(EvalOutputItem.status) != "pass")
    order = col(EvalOutputItem.score).asc() if by_score else col(EvalOutputItem.datasource_item_id).asc()
    return list(session.exec(query.order_by(order, col(EvalOutputItem.datasource_item_id)).limit(500)).all())


@router.get("/evals/{eval_id}/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    eval_id: str,
    run_id: str,
    failures: bool = False,
    sort: Annotated[str, Query(pattern="^(item|score)$")] = "item",
    partial: bool = False,
) -> Response:
    row = eval_for(session, eval_id, user)
    run = run_for(session, eval_id, run_id, user)
    context = {
        "eval": row,
        "run": run,
        "items": _items(session, run_id, failures, sort == "score"),
        "failures": failures,
        "sort": sort,
        "criteria": row.testing_criteria,
    }
    name = "partials/evals/run.html" if partial else "pages/eval_run.html"
    return templates.TemplateResponse(request, name, context)


@router.get("/evals/{eval_id}/compare", response_class=HTMLResponse)
def compare_runs(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    eval_id: str,
    run: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """The same items answered by several runs, side by side, with each grader's verdict."""
    row = eval_for(session, eval_id, user)
    runs = [run_for(session, eval_id, run_id, user) for run_id in (run or [])[:MAX_MODELS]]
    cells: dict[int, dict[str, EvalOutputItem]] = {}
    for r in runs:
        for item in _items(session, r.id, failures=False, by_score=False):
            cells.setdefault(item.datasource_item_id, {})[r.id] = item
    context = {
        "eval": row,
        "runs": runs,
        "cells": dict(sorted(cells.items())),
        "criteria": row.testing_criteria,
    }
    return templates.TemplateResponse(request, "pages/eval_compare.html", context)


@router.post("/evals/{eval_id}/runs/{run_id}/cancel", response_class=HTMLResponse)
def cancel_run(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    eval_id: str,
    run_id: str,
) -> Response:
    run = service.cancel_run(session=session, run=run_for(session, eval_id, run_id, user, manage="cancel"))
    log_action(session, request, user, "eval_run_cancelled", "eval_run", run.id)
    commit(session)
    return RedirectResponse(f"/evals/{eval_id}/runs/{run_id}", status_code=303)


@router.post("/jobs/{job_id}/evaluate", response_class=HTMLResponse)
async def evaluate_job(
    request: Request, session: SessionDep, store: StoreDep, user: CurrentUser, job_id: str
) -> Response:
    """Run an eval on the job's validation rows for each of its checkpoints and its final adapter."""
    from app.auth.access import job_for

    job = job_for(session, job_id, user)
    form = await request.form()
    eval_id = form.get("eval_id")
    row = eval_for(session, str(eval_id or ""), user)
    try:
        runs = service.evaluate_job(
            session=session,
            store=store,
            row=row,
            job=job,
            viewer_id=user.viewer_id,
            owner_id=user.user_id,
            owner=user.username,
        )
    except EvalInvalid as problem:
        session.rollback()
        context = {"eval": row, "problem": str(problem), "job": job}
        return templates.TemplateResponse(request, "partials/evals/refused.html", context, status_code=422)
    for run in runs:
        log_action(
            session, request, user, "eval_run_created", "eval_run", run.id, eval_id=row.id, model=run.model
        )
    commit(session)
    return RedirectResponse(f"/jobs/{job_id}#evaluations", status_code=303)
