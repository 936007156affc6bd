"""REST: who am I, my API keys; for admins, users and the audit log."""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from app.auth import service
from app.auth.access import log_action
from app.auth.deps import AdminUser, CurrentUser
from app.core.scheduling import limit_of
from app.core.tables import ApiKey, AuditEvent, Role, User
from app.core.usage import Usage, usage_by_owner
from app.http.deps import DB_INT_MAX, SessionDep, commit

router = APIRouter(prefix="/api/v1", tags=["accounts"])


class UserPublic(BaseModel):
    object: Literal["user"] = "user"
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    max_concurrent_jobs: int | None = Field(None, description="jobs they may run at once; null: the default")
    job_limit: int = Field(0, description="the limit that applies to them (0: none)")
    gpu_hours: float = Field(0.0, description="time × GPUs over all their jobs' attempts")
    device_hours: float = Field(0.0, description="the same for any device, CPUs included")

    @classmethod
    def of(cls, user: User, usage: Usage | None = None) -> "UserPublic":
        used = usage or Usage()
        return cls(
            username=user.username,
            role=user.role,
            disabled=user.disabled,
            created_at=user.created_at,
            max_concurrent_jobs=user.max_concurrent_jobs,
            job_limit=limit_of(user),
            gpu_hours=used.gpu_hours,
            device_hours=used.device_hours,
        )


class ApiKeyPublic(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    key: str | None = Field(None, description="the key itself: only in the answer that created it")

    @classmethod
    def of(cls, key: ApiKey, secret: str | None = None) -> "ApiKeyPublic":
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
            key=secret,
        )


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class UserCreate(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    role: Role = Role.member


class UserUpdate(BaseModel):
    role: Role | None = None
    disabled: bool | None = None
    max_concurrent_jobs: int | None = Field(
        None, ge=0, le=10_000, description="jobs they may run at once; 0: no limit, null: the default"
    )


class AuditPublic(BaseModel):
    id: int
    created_at: datetime
    username: str
    action: str
    object_type: str
    object_id: str
    ip: str
    detail: dict[str, object]

    @classmethod
    def of(cls, event: AuditEvent) -> "AuditPublic":
        assert event.id is not None
        return cls(
            id=event.id,
            created_at=event.created_at,
            username=event.username,
            action=event.action,
            object_type=event.object_type,
            object_id=event.object_id,
            ip=event.ip,
            detail=event.detail,
        )


class AuditList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditPublic]


@router.get("/me", response_model=UserPublic, summary="The user these credentials belong to")
def me(session: SessionDep, user: CurrentUser) -> UserPublic:
    account = session.get(User, user.user_id)
    assert account is not None
    return UserPublic.of(account, usage_by_owner(session=session).get(user.user_id))


@router.get(
    "/me/api_keys", response_model=list[ApiKeyPublic], summary="Your API keys (never the keys themselves)"
)
def my_keys(session: SessionDep, user: CurrentUser) -> list[ApiKeyPublic]:
    return [ApiKeyPublic.of(k) for k in service.list_api_keys(session=session, user_id=user.user_id)]


@router.post(
    "/me/api_keys", response_model=ApiKeyPublic, summary="Create an API key (shown once, in this answer)"
)
def create_key(session: SessionDep, request: Request, user: CurrentUser, body: ApiKeyCreate) -> ApiKeyPublic:
    account = session.get(User, user.user_id)
    assert account is not None
    key, secret = service.create_api_key(session=session, user=account, name=body.name)
    log_action(session, request, user, "api_key_created", "api_key", key.id)
    commit(session)
    return ApiKeyPublic.of(key, secret)


class RevokedKeys(BaseModel):
    object: Literal["list"] = "list"
    revoked: list[str] = Field(description="ids of the keys this revoked")


@router.delete(
    "/me/api_keys",
    response_model=RevokedKeys,
    summary="Revoke all your API keys (the one sending this too); keys outlive password changes",
)
def revoke_all_keys(session: SessionDep, request: Request, user: CurrentUser) -> RevokedKeys:
    revoked = service.revoke_all_api_keys(session=session, user_id=user.user_id)
    log_action(session, request, user, "api_keys_revoked", "api_key", "*", count=len(revoked))
    commit(session)
    return RevokedKeys(revoked=revoked)


@router.delete("/me/api_keys/{key_id}", response_model=ApiKeyPublic, summary="Revoke one of your API keys")
def revoke_key(session: SessionDep, request: Request, user: CurrentUser, key_id: str) -> ApiKeyPublic:
    key = service.revoke_api_key(session=session, user_id=user.user_id, key_id=key_id)
    log_action(session, request, user, "api_key_revoked", "api_key", key.id)
    commit(session)
    return ApiKeyPublic.of(key)


@router.get("/users", response_model=list[UserPublic], summary="Every user (admins)")
def list_users(session: SessionDep, admin: AdminUser) -> list[UserPublic]:
    usage = usage_by_owner(session=session)
    return [UserPublic.of(u, usage.get(u.id or 0)) for u in service.list_users(session=session)]


@router.post("/users", response_model=UserPublic, summary="Add a user (admins)")
def create_user(session: SessionDep, request: Request, admin: AdminUser, body: UserCreate) -> UserPublic:
    user = service.create_user(
        session=session, username=body.username, password=body.password, role=body.role
    )
    log_action(session, request, admin, "user_created", "user", user.username)
    commit(session)
    return UserPublic.of(user)


@router.patch(
    "/users/{username}", response_model=UserPublic, summary="Change a user's role, or disable them (admins)"
)
def update_user(
    session: SessionDep, request: Request, admin: AdminUser, username: str, body: UserUpdate
) -> UserPublic:
    user = service.get_user(session=session, username=username)
    service.set_role(session=session, user=user, role=body.role or user.role, disabled=body.disabled)
    if "max_concurrent_jobs" in body.model_fields_set:
        service.set_job_limit(session=session, user=user, limit=body.max_concurrent_jobs)
    log_action(session, request, admin, "user_updated", "user", username)
    commit(session)
    return UserPublic.of(user, usage_by_owner(session=session).get(user.id or 0))


@router.get("/audit", response_model=AuditList, summary="Who did what, newest first (admins)")
def audit_log(
    session: SessionDep,
    admin: AdminUser,
    username: str | None = None,
    action: str | None = None,
    before: Annotated[int | None, Query(ge=0, le=DB_INT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditList:
    events = service.list_audit(session=session, limit=limit, before=before, username=username, action=action)
    return AuditList(data=[AuditPublic.of(e) for e in events])
