"""REST: /api/v1/files — upload, list, inspect and clean datasets."""

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, UploadFile
from starlette.datastructures import UploadFile as StarletteUpload

from app.api.deps import SessionDep, StoreDep, commit
from app.basemodels.service import get_model
from app.config import get_settings
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

router = APIRouter(prefix="/api/v1/files", tags=["files"])


async def read_upload(upload: StarletteUpload) -> bytes:
    """The uploaded bytes, refusing (413) anything over the configured limit."""
    limit = get_settings().max_upload_bytes
    chunks, size = [], 0
    while chunk := await upload.read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"file is larger than the {limit // (1 << 20)} MiB upload limit")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("", response_model=FilePublic, summary="Upload a dataset (JSON, JSONL or CSV)")
async def upload_file(
    session: SessionDep,
    store: StoreDep,
    file: UploadFile,
    purpose: Annotated[str, Form()] = "fine-tune",
    validation_split: Annotated[float, Form(ge=0.0, lt=1.0)] = 0.1,
    split_seed: Annotated[int, Form()] = 42,
) -> FilePublic:
    if purpose != "fine-tune":
        raise HTTPException(400, "purpose must be 'fine-tune'")
    data = await read_upload(file)
    dataset = service.create_dataset(
        session=session,
        store=store,
        filename=file.filename or "dataset",
        data=data,
        validation_split=validation_split,
        split_seed=split_seed,
    )
    commit(session)
    return FilePublic.of(dataset)


@router.get("", response_model=FileList)
def list_files(session: SessionDep, limit: int = 100, offset: int = 0) -> FileList:
    datasets, total = service.list_datasets(session=session, limit=min(limit, 1000), offset=offset)
    return FileList(data=[FilePublic.of(d) for d in datasets], total=total)


@router.get("/{file_id}", response_model=FilePublic)
def get_file(session: SessionDep, file_id: str) -> FilePublic:
    return FilePublic.of(service.get_dataset(session=session, dataset_id=file_id))


@router.get(
    "/{file_id}/stats",
    response_model=TokenStatsPublic,
    summary="Token lengths after the chat template",
)
def file_stats(
    session: SessionDep,
    store: StoreDep,
    file_id: str,
    model: str | None = None,
    max_seq_length: int = 1024,
) -> TokenStatsPublic:
    dataset = service.get_dataset(session=session, dataset_id=file_id)
    base = get_model(session=session, model_id=model or get_settings().default_base_model)
    stats = service.token_stats(store=store, dataset=dataset, base_model=base, max_seq_length=max_seq_length)
    return TokenStatsPublic.model_validate(stats)


@router.get("/{file_id}/rows", response_model=RowsPage, summary="A page of a split's rows")
def file_rows(
    session: SessionDep, store: StoreDep, file_id: str, split: str = "train", page: int = 1
) -> RowsPage:
    dataset = service.get_dataset(session=session, dataset_id=file_id)
    if split not in service.SPLITS:
        raise HTTPException(422, f"split must be one of {', '.join(service.SPLITS)}")
    rows, pages = service.preview(store=store, dataset=dataset, split=split, page=page)
    return RowsPage(split=split, page=min(max(page, 1), pages), pages=pages, rows=rows)


@router.get(
    "/{file_id}/cleaning",
    response_model=CleaningReportPublic,
    summary="Cleaning report: duplicates, short outputs, mojibake, repeated outputs, too-long rows",
)
def file_cleaning(
    session: SessionDep, store: StoreDep, file_id: str, query: Annotated[CleaningQuery, Query()]
) -> CleaningReportPublic:
    report = service.cleaning_report(
        session=session, store=store, dataset_id=file_id, model_id=query.model, options=query.options()
    )
    return CleaningReportPublic.model_validate(report)


@router.post(
    "/{file_id}/clean", response_model=FilePublic, summary="Apply cleaning filters as a new dataset version"
)
def clean_file(session: SessionDep, store: StoreDep, file_id: str, body: CleanRequest) -> FilePublic:
    version = service.clean_dataset(
        session=session,
        store=store,
        dataset_id=file_id,
        filters=body.filters,
        too_long=body.too_long,
        model_id=body.model,
        options=body.options(),
    )
    commit(session)
    return FilePublic.of(version)
