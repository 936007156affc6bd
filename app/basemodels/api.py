"""REST: /api/v1/models — base models and finished adapters."""

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from app.auth.access import can_see, log_action
from app.auth.deps import AdminUser, CurrentUser
from app.basemodels import service
from app.core.catalog import merged_models
from app.core.config import get_settings
from app.core.tables import BaseModelRecord
from app.http.deps import SessionDep, commit


class ModelPublic(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tunedeck"
    kind: Literal["base", "adapter", "merged"]
    parent: str | None = None
    job_id: str | None = None
    n_params: int | None = None
    trust_remote_code: bool | None = None

    @classmethod
    def base(cls, record: BaseModelRecord) -> "ModelPublic":
        return cls(
            id=record.id,
            created=int(record.created_at.timestamp()),
            kind="base",
            n_params=record.n_params,
            trust_remote_code=record.trust_remote_code,
        )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelPublic]


class ModelRegister(BaseModel):
    """POST /api/v1/models: a folder on the server with config.json, tokenizer.json and safetensors."""

    name: str = Field(
        pattern=service.NAME_PATTERN.pattern,
        description="Stable name: lowercase letters, digits, '.', '_', '-'",
    )
    path: str = Field(
        min_length=1,
        max_length=1024,
        description="The folder, absolute or relative to a model root; it must be under TUNEDECK_MODEL_ROOTS",
    )
    description: str = Field("", max_length=500)
    trust_remote_code: bool = Field(False, description="Allow the folder's own Python code (modeling_*.py)")


class ModelUpdate(BaseModel):
    trust_remote_code: bool = Field(description="Allow the model folder's own Python code when it is loaded")


router = APIRouter(prefix="/api/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Base models and finished adapters")
def list_models(session: SessionDep, user: CurrentUser) -> ModelList:
    bases = [ModelPublic.base(m) for m in service.list_models(session=session)]
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


@router.post("", response_model=ModelPublic, summary="Register a model folder on the server (admins)")
def register_model(
    session: SessionDep, request: Request, user: AdminUser, body: ModelRegister
) -> ModelPublic:
    folder = service.allowed_model_folder(body.path, get_settings().model_root_dirs)
    record = service.register_model(
        session=session,
        name=body.name,
        folder=folder,
        description=body.description,
        trust_remote_code=body.trust_remote_code,
    )
    log_action(
        session,
        request,
        user,
        "model_registered",
        "model",
        record.id,
        path=record.path,
        trust_remote_code=record.trust_remote_code,
    )
    commit(session)
    return ModelPublic.base(record)


@router.patch(
    "/{model_id}", response_model=ModelPublic, summary="Allow or forbid a model's own code (admins)"
)
def update_model(
    session: SessionDep, request: Request, user: AdminUser, model_id: str, body: ModelUpdate
) -> ModelPublic:
    record = service.set_trust_remote_code(session=session, model_id=model_id, allowed=body.trust_remote_code)
    log_action(
        session, request, user, "model_updated", "model", model_id, trust_remote_code=body.trust_remote_code
    )
    commit(session)
    return ModelPublic.base(record)
