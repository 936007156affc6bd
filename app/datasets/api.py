"""REST: /api/v1/files — upload, list, inspect and clean datasets."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from app.auth.access import dataset_for, log_action, set_owner
from app.auth.deps import CurrentUser
from app.basemodels.service import get_model
from app.core.config import get_settings
from app.core.rows import SPLITS
from app.datasets import service
from app.datasets.schemas import (
    CleaningQuery,
    CleaningReportPublic,
    CleanRequest,
    FileList,
    FilePublic,
    RowsPage,
    TokenStatsPublic,
)
from app.http.deps import DB_INT_MAX, SessionDep, StoreDep, commit
from app.http.limits import describe_limit

router = APIRouter(prefix="/api/v1/files", tags=["files"])


async def read_upload(upload: StarletteUpload) -> bytes:
    """The uploaded bytes, refusing (413) anything over the configured limit."""
    limit = get_settings().max_upload_bytes
    chunks, size = [], 0
    while chunk := await upload.read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"file is larger than the {describe_limit(limit)} upload limit")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("", response_model=FilePublic, summary="Upload a dataset (JSON, JSONL or CSV)")
async def upload_file(
    session: SessionDep,
    store: StoreDep,
    request: Request,
    user: CurrentUser,
    file: UploadFile,
    purpose: Annotated[str, Form()] = "fine-tune",
    validation_split: Annotated[float, Form(ge=0.0, lt=1.0)] = 0.1,
    split_seed: Annotated[int, Form(ge=0, le=service.SEED_MAX)] = 42,
    private: Annotated[bool, Form(description="only you and admins see it")] = False,
) -> FilePublic:
    if purpose not in ("fine-tune", "evals"):
        raise HTTPException(400, "purpose must be 'fine-tune' (training data) or 'evals' (eval items)")
    data = await read_upload(file)
    if purpose == "evals":
        make = partial(
            service.create_eval_items,
            session=session,
            store=store,
            filename=file.filename or "items",
            data=data,
        )
    else:
        make = partial(
            service.create_dataset,
            session=session,
            store=store,
            filename=file.filename or "dataset",
            data=data,
            validation_split=validation_split,
            split_seed=split_seed,
        )
    dataset = await run_in_threadpool(make)  # parsing a large file takes seconds: not on the event loop
    set_owner(dataset, user, private=private)
    log_action(session, request, user, "file_uploaded", "file", dataset.id, filename=dataset.filename)
    commit(session)
    return FilePublic.of(dataset)


@router.get("", response_model=FileList)
def list_files(
    session: SessionDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
) -> FileList:
    datasets, total = service.list_datasets(
        session=session, limit=limit, offset=offset, viewer_id=user.viewer_id
    )
    return FileList(data=[FilePublic.of(d) for d in datasets], total=total)


@router.get("/{file_id}", response_model=FilePublic)
def get_file(session: SessionDep, user: CurrentUser, file_id: str) -> FilePublic:
    return FilePublic.of(dataset_for(session, file_id, user))


@router.get(
    "/{file_id}/stats",
    response_model=TokenStatsPublic,
    summary="Token lengths after the chat template",
)
def file_stats(
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    file_id: str,
    model: str | None = None,
    max_seq_length: Annotated[int, Query(ge=16, le=1 << 20)] = 1024,
) -> TokenStatsPublic:
    dataset = dataset_for(session, file_id, user)
    base = get_model(session=session, model_id=model or get_settings().default_base_model)
    stats = service.token_stats(store=store, dataset=dataset, base_model=base, max_seq_length=max_seq_length)
    return TokenStatsPublic.model_validate(stats)


@router.get("/{file_id}/rows", response_model=RowsPage, summary="A page of a split's rows")
def file_rows(
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    file_id: str,
    split: str = "train",
    page: Annotated[int, Query(ge=1, le=1 << 30)] = 1,
) -> RowsPage:
    dataset = dataset_for(session, file_id, user)
    if split not in SPLITS:
        raise HTTPException(422, f"split must be one of {', '.join(SPLITS)}")
    rows, pages = service.preview(store=store, dataset=dataset, split=split, page=page)
    return RowsPage(split=split, page=min(max(page, 1), pages), pages=pages, rows=rows)


@router.get(
    "/{file_id}/cleaning",
    response_model=CleaningReportPublic,
    summary="Cleaning report: duplicates, short outputs, mojibake, repeated outputs, too-long rows",
)
def file_cleaning(
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    file_id: str,
    query: Annotated[CleaningQuery, Query()],
) -> CleaningReportPublic:
    dataset_for(session, file_id, user)
    report = service.cleaning_report(
        session=session, store=store, dataset_id=file_id, model_id=query.model, options=query.options()
    )
    return CleaningReportPublic.model_validate(report)


@router.post(
    "/{file_id}/clean", response_model=FilePublic, summary="Apply cleaning filters as a new dataset version"
)
def clean_file(
    session: SessionDep,
    store: StoreDep,
    request: Request,
    user: CurrentUser,
    file_id: str,
    body: CleanRequest,
) -> FilePublic:
    dataset_for(session, file_id, user, manage="clean")
    version = service.clean_dataset(
        session=session,
        store=store,
        dataset_id=file_id,
        filters=body.filters,
        too_long=body.too_long,
        model_id=body.model,
        options=body.options(),
    )
    parent = dataset_for(session, file_id, user)
    set_owner(version, user, private=parent.private)
    log_action(session, request, user, "file_cleaned", "file", version.id, parent=file_id)
    commit(session)
    return FilePublic.of(version)
