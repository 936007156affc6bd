"""HTML pages for datasets: list + upload; one dataset's split, stats, cleaning report, versions, preview."""

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.auth.access import can_manage, dataset_for, log_action, set_owner
from app.auth.deps import CurrentUser, Principal
from app.basemodels.service import list_models
from app.core.config import get_settings
from app.core.errors import NotFound
from app.core.rows import SPLITS
from app.datasets import service
from app.datasets.api import read_upload
from app.datasets.parsing import DatasetInvalid, Problem
from app.datasets.schemas import CleaningQuery, CleanRequest
from app.http.deps import SessionDep, StoreDep, commit
from app.http.templates import templates

router = APIRouter(include_in_schema=False)


def _list_page(
    request: Request,
    session: SessionDep,
    user: Principal,
    problem: DatasetInvalid | None = None,
    status: int = 200,
) -> Response:
    datasets, total = service.list_datasets(session=session, limit=200, viewer_id=user.viewer_id)
    context = {
        "datasets": datasets,
        "total": total,
        "problem": problem,
        "max_upload_bytes": get_settings().max_upload_bytes,
    }
    return templates.TemplateResponse(request, "pages/datasets.html", context, status_code=status)


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    return _list_page(request, session, user)


@router.post("/datasets", response_class=HTMLResponse)
async def upload_dataset(
    request: Request, session: SessionDep, store: StoreDep, user: CurrentUser
) -> Response:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        problem = DatasetInvalid([Problem(0, "choose a file to upload")])
        return _list_page(request, session, user, problem, status=422)
    try:
        split = _form_number(form.get("validation_split"), float, 0.1, "validation_split")
        seed = _form_number(form.get("split_seed"), int, 42, "split_seed")
        data = await read_upload(upload)
        dataset = await run_in_threadpool(  # parsing a large file takes seconds: not on the event loop
            partial(
                service.create_dataset,
                session=session,
                store=store,
                filename=upload.filename,
                data=data,
                validation_split=split,
                split_seed=seed,
            )
        )
    except ValueError as exc:
        problem = exc if isinstance(exc, DatasetInvalid) else DatasetInvalid([Problem(0, str(exc))])
        return _list_page(request, session, user, problem, status=422)
    set_owner(dataset, user, private=form.get("private") in ("on", "true", "1"))
    log_action(session, request, user, "file_uploaded", "file", dataset.id, filename=dataset.filename)
    commit(session)
    return RedirectResponse(f"/datasets/{dataset.id}", status_code=303)


def _form_number(value: object, kind: type[float] | type[int], default: float, name: str) -> Any:
    """A number from the upload form, or DatasetInvalid naming the field."""
    text = str(value or "").strip()
    try:
        return kind(text) if text else default
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise DatasetInvalid([Problem(0, f"must be {what}, got {text[:40]!r}", name)]) from None


def _dataset_page(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    user: Principal,
    dataset_id: str,
    query: CleaningQuery,
    problem: DatasetInvalid | None = None,
) -> Response:
    dataset = dataset_for(session, dataset_id, user)
    if dataset.purpose == "evals":
        rows, pages = service.preview(store=store, dataset=dataset, split="train", page=1, per_page=50)
        context = {"dataset": dataset, "rows": rows, "pages": pages}
        return templates.TemplateResponse(request, "pages/eval_items.html", context)
    models = list_models(session=session)
    chosen = next(
        (m for m in models if m.id == (query.model or get_settings().default_base_model)),
        models[0] if models else None,
    )
    stats = (
        service.token_stats(
            store=store, dataset=dataset, base_model=chosen, max_seq_length=query.max_seq_length
        )
        if chosen
        else None
    )
    report = service.cleaning_report(
        session=session,
        store=store,
        dataset_id=dataset.id,
        model_id=chosen.id if chosen else None,
        options=query.options(),
    )
    rows, pages = service.preview(store=store, dataset=dataset, split="train", page=1)
    context = {
        "dataset": dataset,
        "parent": _visible_parent(session, user, dataset.parent_id),
        "versions": service.list_versions(session=session, dataset_id=dataset.id),
        "models": models,
        "chosen": chosen,
        "stats": stats,
        "report": report,
        "problem": problem,
        "may_manage": can_manage(dataset, user),
        "rows": rows,
        "page": 1,
        "pages": pages,
        "split": "train",
    }
    status = 422 if problem else 200
    return templates.TemplateResponse(request, "pages/dataset.html", context, status_code=status)


def _visible_parent(session: SessionDep, user: Principal, parent_id: str | None) -> object:
    if not parent_id:
        return None
    try:
        return dataset_for(session, parent_id, user)
    except NotFound:
        return None


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    dataset_id: str,
    query: Annotated[CleaningQuery, Query()],
) -> Response:
    return _dataset_page(request, session, store, user, dataset_id, query)


@router.post("/datasets/{dataset_id}/clean", response_class=HTMLResponse)
def clean_dataset(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    dataset_id: str,
    form: Annotated[CleanRequest, Form()],
) -> Response:
    parent = dataset_for(session, dataset_id, user, manage="clean")
    try:
        version = service.clean_dataset(
            session=session,
            store=store,
            dataset_id=dataset_id,
            filters=form.filters,
            too_long=form.too_long,
            model_id=form.model,
            options=form.options(),
        )
    except DatasetInvalid as exc:
        return _dataset_page(request, session, store, user, dataset_id, form, problem=exc)
    set_owner(version, user, private=parent.private)
    log_action(session, request, user, "file_cleaned", "file", version.id, parent=dataset_id)
    commit(session)
    return RedirectResponse(f"/datasets/{version.id}", status_code=303)


@router.get("/datasets/{dataset_id}/rows", response_class=HTMLResponse)
def dataset_rows(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    dataset_id: str,
    split: str = "train",
    page: Annotated[int, Query(ge=1, le=1 << 30)] = 1,
) -> Response:
    dataset = dataset_for(session, dataset_id, user)
    split = split if split in SPLITS else "train"
    rows, pages = service.preview(store=store, dataset=dataset, split=split, page=page)
    context = {
        "dataset": dataset,
        "rows": rows,
        "page": min(max(page, 1), pages),
        "pages": pages,
        "split": split,
    }
    template = (
        "partials/datasets/rows.html" if request.headers.get("HX-Request") else "pages/dataset_rows.html"
    )
    return templates.TemplateResponse(request, template, context)
