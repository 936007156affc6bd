"""People and programs that use tunedeck: users, their API keys and browser sessions, and the
audit log of what each did."""

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.core.timeutil import UTCDateTime, utcnow


class Role(StrEnum):
    """What a user may do: viewers read, members manage their own work, admins everything."""

    admin = "admin"
    member = "member"
    viewer = "viewer"


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    password_hash: str = Field(max_length=255)
    role: Role = Field(
        default=Role.member, sa_type=sa.Enum(Role, native_enum=False, length=16, create_constraint=False)
    )
    must_change_password: bool = Field(default=False, description="set for a generated one-time password")
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    max_concurrent_jobs: int | None = Field(
        default=None, description="jobs this user may run at once; None: the site default, 0: no limit"
    )


class ApiKey(SQLModel, table=True):
    """A named bearer token. Only its SHA-256 is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16, description="the key's first characters, to tell keys apart")
    key_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LoginSession(SQLModel, table=True):
    """A browser login. The cookie holds a random token; the table holds its SHA-256."""

    __tablename__ = "login_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class AuditEvent(SQLModel, table=True):
    """Who did what to which object, and when. Written in the same transaction as the action."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    user_id: int | None = Field(default=None, index=True)
    username: str = Field(default="", max_length=64, index=True)
    action: str = Field(max_length=48, index=True)
    object_type: str = Field(default="", max_length=32)
    object_id: str = Field(default="", max_length=300)
    ip: str = Field(default="", max_length=64, index=True)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class AppSecret(SQLModel, table=True):
    """Secrets the processes of one installation share (e.g. the web → model server token)."""

    __tablename__ = "app_secrets"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LoginThrottle(SQLModel, table=True):
    """Login attempts per username and per address in the current window. An attempt is counted
    before its password is checked (one atomic upsert), so parallel guesses cannot slip past the
    limit; a successful login gives its count back."""

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=100, description="'user:<name>' or 'ip:<address>'")
    window_start: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 0
