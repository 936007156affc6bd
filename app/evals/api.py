"""REST: /api/v1/evals — OpenAI's Evals API: evals, their runs and each run's output items.

Evals are seen by the whole team and changed by their owner and admins. A run is seen by the
team too, unless its items came from a private file or job: then only by its owner and admins.
Runs are answered by a short-lane worker; their counts grow as items are graded.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from sqlmodel import Session, col, select

from app.auth.access import log_action
from app.auth.deps import CurrentUser, Principal
from app.core.errors import Forbidden, NotFound
from app.core.tables import Eval, EvalOutputItem, EvalRun, Role
from app.evals import service
from app.evals.schemas import (
    CriterionResult,
    EvalCreate,
    EvalDeleted,
    EvalList,
    EvalPublic,
    EvalUpdate,
    ModelUsage,
    OutputItemList,
    OutputItemPublic,
    ResultCounts,
    RunCreate,
    RunDeleted,
    RunList,
    RunPublic,
)
from app.http.deps import SessionDep, StoreDep, commit

router = APIRouter(prefix="/api/v1/evals", tags=["evals"])
Order = Literal["asc", "desc"]
Limit = Annotated[int, Query(ge=1, le=100)]


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def eval_public(row: Eval) -> EvalPublic:
    criteria = [{k: v for k, v in c.items()} for c in row.testing_criteria]
    return EvalPublic(
        id=row.id,
        created_at=_seconds(row.created_at),
        name=row.name,
        metadata=row.meta,
        data_source_config=service.public_config(row),
        testing_criteria=criteria,
    )


def run_public(run: EvalRun, base_url: str) -> RunPublic:
    usage = [
        ModelUsage(
            model_name=model,
            invocation_count=u.get("invocations", 0),
            prompt_tokens=u.get("prompt_tokens", 0),
            completion_tokens=u.get("completion_tokens", 0),
            total_tokens=u.get("prompt_tokens", 0) + u.get("completion_tokens", 0),
            cached_tokens=0,
        )
        for model, u in run.usage.items()
    ]
    return RunPublic(
        id=run.id,
        eval_id=run.eval_id,
        name=run.name,
        created_at=_seconds(run.created_at),
        status=run.status.value,
        model=run.model,
        data_source=run.data_source,
        error=run.error,
        metadata=run.meta,
        report_url=f"{base_url.rstrip('/')}/evals/{run.eval_id}/runs/{run.id}",
        result_counts=ResultCounts(
            total=run.total, errored=run.errored, failed=run.failed, passed=run.passed
        ),
        per_model_usage=usage,
        per_testing_criteria_results=[
            CriterionResult(
                testing_criteria=key,
                passed=c.get("passed", 0),
                failed=c.get("failed", 0),
                accuracy=c.get("accuracy"),
                macro_f1=c.get("macro_f1"),
            )
            for key, c in run.per_criterion.items()
        ],
    )


def item_public(item: EvalOutputItem) -> OutputItemPublic:
    return OutputItemPublic(
        id=item.id,
        created_at=_seconds(item.created_at),
        eval_id=item.eval_id,
        run_id=item.run_id,
        status=item.status,
        datasource_item_id=item.datasource_item_id,
        datasource_item=item.datasource_item,
        results=item.results,
        sample=item.sample,
    )


def _may_manage(owner_id: int | None, user: Principal) -> bool:
    return user.is_admin or (user.role == Role.member and owner_id == user.user_id)


def eval_for(session: Session, eval_id: str, user: Principal, *, manage: str | None = None) -> Eval:
    row = service.get_eval(session=session, eval_id=eval_id)
    if manage and not _may_manage(row.owner_id, user):
        raise Forbidden(f"only the eval's owner or an admin can {manage} eval {eval_id}")
    return row


def run_for(
    session: Session, eval_id: str, run_id: str, user: Principal, *, manage: str | None = None
) -> EvalRun:
    run = session.get(EvalRun, run_id)
    hidden = run is not None and run.private and not (user.is_admin or run.owner_id == user.user_id)
    if run is None or run.eval_id != eval_id or hidden:
        raise NotFound(f"no run with id {run_id!r} in eval {eval_id!r}")
    if manage and not _may_manage(run.owner_id, user):
        raise Forbidden(f"only the run's owner or an admin can {manage} run {run_id}")
    return run


def visible_runs(user: Principal) -> Any:
    if user.is_admin:
        return col(EvalRun.id).is_not(None)
    return col(EvalRun.private).is_(False) | (col(EvalRun.owner_id) == user.user_id)


@router.post("", response_model=EvalPublic, summary="Create an eval: an item schema and testing criteria")
def create_eval(session: SessionDep, request: Request, user: CurrentUser, body: EvalCreate) -> EvalPublic:
    row = service.create_eval(session=session, body=body, owner_id=user.user_id, owner=user.username)
    log_action(session, request, user, "eval_created", "eval", row.id, name=row.name)
    commit(session)
    return eval_public(row)


@router.get("", response_model=EvalList, summary="List evals, newest first")
def list_evals(
    session: SessionDep,
    user: CurrentUser,
    after: str | None = None,
    limit: Limit = 20,
    order: Order = "desc",
    order_by: Literal["created_at", "updated_at"] = "created_at",
) -> EvalList:
    key = col(Eval.created_at) if order_by == "created_at" else col(Eval.updated_at)
    rows, more = service.page(
        select(Eval), Eval, session=session, after=after, limit=limit, order=order, key=key
    )
    data = [eval_public(r) for r in rows]
    return EvalList(data=data, first_id=_first(data), last_id=_last(data), has_more=more)


@router.get("/{eval_id}", response_model=EvalPublic)
def get_eval(session: SessionDep, user: CurrentUser, eval_id: str) -> EvalPublic:
    return eval_public(eval_for(session, eval_id, user))


@router.post("/{eval_id}", response_model=EvalPublic, summary="Rename an eval or change its metadata")
def update_eval(
    session: SessionDep, request: Request, user: CurrentUser, eval_id: str, body: EvalUpdate
) -> EvalPublic:
    row = service.update_eval(
        session=session, row=eval_for(session, eval_id, user, manage="update"), body=body
    )
    log_action(session, request, user, "eval_updated", "eval", eval_id)
    commit(session)
    return eval_public(row)


@router.delete("/{eval_id}", response_model=EvalDeleted, summary="Delete an eval and all its runs")
def delete_eval(
    session: SessionDep, store: StoreDep, request: Request, user: CurrentUser, eval_id: str
) -> EvalDeleted:
    service.delete_eval(session=session, store=store, row=eval_for(session, eval_id, user, manage="delete"))
    log_action(session, request, user, "eval_deleted", "eval", eval_id)
    commit(session)
    return EvalDeleted(eval_id=eval_id)


@router.post("/{eval_id}/runs", response_model=RunPublic, summary="Run an eval against a served model")
def create_run(
    session: SessionDep, store: StoreDep, request: Request, user: CurrentUser, eval_id: str, body: RunCreate
) -> RunPublic:
    row = eval_for(session, eval_id, user)
    run = service.create_run(
        session=session,
        store=store,
        row=row,
        body=body,
        viewer_id=user.viewer_id,
        owner_id=user.user_id,
        owner=user.username,
    )
    log_action(
        session, request, user, "eval_run_created", "eval_run", run.id, eval_id=eval_id, model=run.model
    )
    commit(session)
    return run_public(run, str(request.base_url))


@router.get("/{eval_id}/runs", response_model=RunList, summary="An eval's runs")
def list_runs(
    session: SessionDep,
    request: Request,
    user: CurrentUser,
    eval_id: str,
    after: str | None = None,
    limit: Limit = 20,
    order: Order = "asc",
    status: Literal["queued", "in_progress", "completed", "canceled", "failed"] | None = None,
) -> RunList:
    eval_for(session, eval_id, user)
    query = select(EvalRun).where(EvalRun.eval_id == eval_id, visible_runs(user))
    if status is not None:
        query = query.where(col(EvalRun.status) == status)
    rows, more = service.page(
        query, EvalRun, session=session, after=after, limit=limit, order=order, key=col(EvalRun.created_at)
    )
    data = [run_public(r, str(request.base_url)) for r in rows]
    return RunList(data=data, first_id=_first(data), last_id=_last(data), has_more=more)


@router.get("/{eval_id}/runs/{run_id}", response_model=RunPublic)
def get_run(session: SessionDep, request: Request, user: CurrentUser, eval_id: str, run_id: str) -> RunPublic:
    return run_public(run_for(session, eval_id, run_id, user), str(request.base_url))


def _cancel(session: Session, request: Request, user: Principal, eval_id: str, run_id: str) -> RunPublic:
    run = service.cancel_run(session=session, run=run_for(session, eval_id, run_id, user, manage="cancel"))
    log_action(session, request, user, "eval_run_cancelled", "eval_run", run_id)
    commit(session)
    return run_public(run, str(request.base_url))


@router.post("/{eval_id}/runs/{run_id}", response_model=RunPublic, summary="Cancel a run that is under way")
def cancel_run(
    session: SessionDep, request: Request, user: CurrentUser, eval_id: str, run_id: str
) -> RunPublic:
    return _cancel(session, request, user, eval_id, run_id)


@router.post(
    "/{eval_id}/runs/{run_id}/cancel",
    response_model=RunPublic,
    summary="Cancel a run (the path some clients use)",
)
def cancel_run_alias(
    session: SessionDep, request: Request, user: CurrentUser, eval_id: str, run_id: str
) -> RunPublic:
    return _cancel(session, request, user, eval_id, run_id)


@router.delete(
    "/{eval_id}/runs/{run_id}", response_model=RunDeleted, summary="Delete a run and its output items"
)
def delete_run(
    session: SessionDep, store: StoreDep, request: Request, user: CurrentUser, eval_id: str, run_id: str
) -> RunDeleted:
    service.delete_run(
        session=session, store=store, run=run_for(session, eval_id, run_id, user, manage="delete")
    )
    log_action(session, request, user, "eval_run_deleted", "eval_run", run_id)
    commit(session)
    return RunDeleted(run_id=run_id)


@router.get("/{eval_id}/runs/{run_id}/output_items", response_model=OutputItemList)
def list_output_items(
    session: SessionDep,
    user: CurrentUser,
    eval_id: str,
    run_id: str,
    after: str | None = None,
    limit: Limit = 20,
    order: Order = "asc",
    status: Literal["pass", "fail"] | None = None,
) -> OutputItemList:
    run_for(session, eval_id, run_id, user)
    rows, more = service.page(
        service.output_items(session=session, run_id=run_id, status=status),
        EvalOutputItem,
        session=session,
        after=after,
        limit=limit,
        order=order,
        key=col(EvalOutputItem.datasource_item_id),
    )
    data = [item_public(r) for r in rows]
    return OutputItemList(data=data, first_id=_first(data), last_id=_last(data), has_more=more)


@router.get("/{eval_id}/runs/{run_id}/output_items/{item_id}", response_model=OutputItemPublic)
def get_output_item(
    session: SessionDep, user: CurrentUser, eval_id: str, run_id: str, item_id: str
) -> OutputItemPublic:
    run_for(session, eval_id, run_id, user)
    item = session.get(EvalOutputItem, item_id)
    if item is None or item.run_id != run_id:
        raise NotFound(f"no output item with id {item_id!r} in run {run_id!r}")
    return item_public(item)


def _first(data: list[Any]) -> str | None:
    return data[0].id if data else None


def _last(data: list[Any]) -> str | None:
    return data[-1].id if data else None
