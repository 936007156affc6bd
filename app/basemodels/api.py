"""REST: /api/v1/models — base models and finished adapters."""

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import SessionDep
from app.auth.access import can_see
from app.auth.deps import CurrentUser
from app.basemodels import service
from app.jobs.merging import merged_models


class ModelPublic(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tunedeck"
    kind: Literal["base", "adapter", "merged"]
    parent: str | None = None
    job_id: str | None = None
    n_params: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelPublic]


router = APIRouter(prefix="/api/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Base models and finished adapters")
def list_models(session: SessionDep, user: CurrentUser) -> ModelList:
    bases = [
        ModelPublic(id=m.id, created=int(m.created_at.timestamp()), kind="base", n_params=m.n_params)
        for m in service.list_models(session=session)
    ]
    adapters = [
        ModelPublic(
            id=job.fine_tuned_model or job.id,
            created=int((job.finished_at or job.created_at).timestamp()),
            kind="adapter",
            parent=job.model,
            job_id=job.id,
        )
        for job in service.list_adapters(session=session)
        if can_see(job, user)
    ]
    merged = [
        ModelPublic(
            id=name,
            created=int((merge.finished_at or merge.created_at).timestamp()),
            kind="merged",
            parent=name.rsplit(":", 2)[0],
            job_id=merge.job_id,
        )
        for merge, name, job in merged_models(session=session)
        if can_see(job, user)
    ]
    return ModelList(data=bases + adapters + merged)
