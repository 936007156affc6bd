"""Users, API keys, login sessions, the audit log and login throttling — no HTTP here."""

import math
import re
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, func, select

from app.auth.passwords import dummy_hash, hash_password, verify_password
from app.core.credentials import KEY_PREFIX, sha256
from app.core.errors import InvalidRequest
from app.core.tables import ApiKey, AuditEvent, LoginSession, LoginThrottle, Role, User
from app.core.timeutil import utcnow

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")
MIN_PASSWORD = 8
SESSION_LIFETIME = timedelta(days=7)

# Login attempts within a window that lock out a username, or an address, until it ends (a
# successful login gives its attempt back, so these are failures in effect).
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_IP = 20


class AccountError(InvalidRequest):
    """A request about accounts that cannot be done as asked; the message says what to change."""

    def __init__(self, message: str, param: str, status: int = 400) -> None:
        super().__init__(message, param=param, code=f"invalid_{param}")
        self.status = status


# ---- users -------------------------------------------------------------------------------------


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters", "password")
    if len(password) > 1024:
        raise AccountError("the password must have at most 1024 characters", "password")


def create_user(
    *, session: Session, username: str, password: str, role: Role, must_change_password: bool = False
) -> User:
    if not USERNAME.match(username):
        raise AccountError(
            "a username has 2–64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            "username",
        )
    check_password_rules(password)
    if session.exec(select(User).where(func.lower(col(User.username)) == username.lower())).first():
        raise AccountError(f"the username {username!r} is taken", "username", status=409)
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        must_change_password=must_change_password,
    )
    session.add(user)
    session.flush()
    return user


def get_user(*, session: Session, username: str) -> User:
    user = session.exec(select(User).where(col(User.username) == username)).first()
    if user is None:
        raise AccountError(f"no user named {username!r}", "username", status=404)
    return user


def list_users(*, session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.username))).all())


def count_users(*, session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(User)).one())


def check_login(*, session: Session, username: str, password: str) -> User | None:
    """The user when the password is right; None otherwise, taking as long either way."""
    user = session.exec(select(User).where(col(User.username) == username)).first()
    if user is None or user.disabled:
        verify_password(password, dummy_hash())
        return None
    return user if verify_password(password, user.password_hash) else None


def set_password(*, session: Session, user: User, password: str) -> None:
    check_password_rules(password)
    user.password_hash = hash_password(password)
    user.must_change_password = False
    session.add(user)
    # a new password ends every other login of this user
    session.execute(sa.delete(LoginSession).where(col(LoginSession.user_id) == user.id))


def set_role(*, session: Session, user: User, role: Role, disabled: bool | None = None) -> None:
    if user.role == Role.admin and (role != Role.admin or disabled):
        admins = session.exec(
            select(func.count()).select_from(User).where(col(User.role) == Role.admin, ~col(User.disabled))
        ).one()
        if admins <= 1:
            raise AccountError("this is the last admin; make another user admin first", "role", status=409)
    user.role = role
    if disabled is not None:
        user.disabled = disabled
        if disabled:
            session.execute(sa.delete(LoginSession).where(col(LoginSession.user_id) == user.id))
    session.add(user)


def set_job_limit(*, session: Session, user: User, limit: int | None) -> None:
    """Jobs ``user`` may run at once: None for the site default, 0 for no limit."""
    if limit is not None and limit < 0:
        raise AccountError(
            "the job limit is a number of jobs, 0 or more (0: no limit)", "max_concurrent_jobs"
        )
    user.max_concurrent_jobs = limit
    session.add(user)


# ---- API keys ----------------------------------------------------------------------------------


def create_api_key(*, session: Session, user: User, name: str) -> tuple[ApiKey, str]:
    """A new key for ``user``; the secret is returned here and never again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise AccountError("give the key a name of 1–100 characters", "name")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    key = ApiKey(
        id=f"key-{uuid.uuid4().hex[:16]}",
        user_id=user.id,
        name=name,
        prefix=secret[: len(KEY_PREFIX) + 6],
        key_hash=sha256(secret),
    )
    session.add(key)
    session.flush()
    return key, secret


def list_api_keys(*, session: Session, user_id: int) -> list[ApiKey]:
    query = select(ApiKey).where(col(ApiKey.user_id) == user_id).order_by(col(ApiKey.created_at).desc())
    return list(session.exec(query).all())


def revoke_api_key(*, session: Session, user_id: int | None, key_id: str) -> ApiKey:
    """Revoke ``key_id`` (one of ``user_id``'s keys; any key when ``user_id`` is None)."""
    key = session.get(ApiKey, key_id)
    if key is None or (user_id is not None and key.user_id != user_id):
        raise AccountError(f"no API key with id {key_id!r}", "key", status=404)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
    return key


def revoke_all_api_keys(*, session: Session, user_id: int) -> list[str]:
    """Revoke every active key of ``user_id`` (keys outlive password changes: this is how to end
    them all at once); return the ids revoked."""
    keys = [k for k in list_api_keys(session=session, user_id=user_id) if k.revoked_at is None]
    now = utcnow()
    for key in keys:
        key.revoked_at = now
        session.add(key)
    return [k.id for k in keys]


# ---- browser sessions --------------------------------------------------------------------------


def start_login(*, session: Session, user: User) -> tuple[str, LoginSession]:
    """A new login for ``user``: the cookie's token (returned once) and its row."""
    token = secrets.token_urlsafe(32)
    assert user.id is not None
    login = LoginSession(
        token_hash=sha256(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + SESSION_LIFETIME,
    )
    session.add(login)
    # tidy up: logins that expired are of no use to anyone
    session.execute(sa.delete(LoginSession).where(col(LoginSession.expires_at) < utcnow()))
    return token, login


def user_for_login(*, session: Session, token: str) -> tuple[User, LoginSession] | None:
    if not token or len(token) > 200:
        return None
    login = session.get(LoginSession, sha256(token))
    if login is None or login.expires_at < utcnow():
        return None
    user = session.get(User, login.user_id)
    if user is None or user.disabled:
        return None
    return user, login


def end_login(*, session: Session, token: str) -> None:
    session.execute(sa.delete(LoginSession).where(col(LoginSession.token_hash) == sha256(token)))


# ---- audit log and throttling ------------------------------------------------------------------


def audit(
    *,
    session: Session,
    user_id: int | None,
    username: str,
    action: str,
    object_type: str = "",
    object_id: str = "",
    ip: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Record an action in the caller's transaction: it is logged exactly when it happens."""
    session.add(
        AuditEvent(
            user_id=user_id,
            username=username[:64],
            action=action,
            object_type=object_type,
            object_id=object_id[:300],
            ip=ip[:64],
            detail=detail or {},
        )
    )


def list_audit(
    *,
    session: Session,
    limit: int = 100,
    before: int | None = None,
    username: str | None = None,
    action: str | None = None,
) -> list[AuditEvent]:
    query = select(AuditEvent)
    if before is not None:
        query = query.where(col(AuditEvent.id) < before)
    if username:
        query = query.where(col(AuditEvent.username) == username)
    if action:
        query = query.where(col(AuditEvent.action) == action)
    return list(session.exec(query.order_by(col(AuditEvent.id).desc()).limit(limit)).all())


def reserve_login_attempt(*, session: Session, username: str, ip: str) -> int:
    """Count one login attempt against the username and the address, before its password is
    checked; return the seconds to wait (0: go ahead and check it). Each count is one atomic
    upsert that returns the new total, so of N parallel attempts exactly the first ones up to the
    limit go ahead. Commit it at once (its own transaction) so parallel attempts see it."""
    now = utcnow()
    waits = [0]
    for key, limit in (
        (_user_key(username), MAX_FAILURES_PER_USER),
        (f"ip:{ip[:64]}" if ip else "", MAX_FAILURES_PER_IP),
    ):
        if key:
            attempts, window_start = _count_attempt(session, key, now)
            if attempts > limit:  # locked until the window that filled up has passed
                waits.append(max(1, math.ceil((window_start + LOGIN_WINDOW - now).total_seconds())))
    return max(waits)


def release_login_attempt(*, session: Session, username: str, ip: str) -> None:
    """A login succeeded: the username's count starts afresh and the address gets its attempt back."""
    session.execute(sa.delete(LoginThrottle).where(col(LoginThrottle.key) == _user_key(username)))
    if ip:
        session.execute(
            sa.update(LoginThrottle)
            .where(col(LoginThrottle.key) == f"ip:{ip[:64]}", col(LoginThrottle.attempts) > 0)
            .values(attempts=col(LoginThrottle.attempts) - 1)
        )


def _user_key(username: str) -> str:
    return f"user:{username.lower()[:64]}"


def _count_attempt(session: Session, key: str, now: datetime) -> tuple[int, datetime]:
    """Add one to ``key``'s attempts (starting a new window when the last one is over) and return
    (attempts, window start) as the database left them: INSERT … ON CONFLICT DO UPDATE … RETURNING,
    on SQLite and Postgres alike."""
    table = LoginThrottle.__table__  # type: ignore[attr-defined]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    expired = table.c.window_start < now - LOGIN_WINDOW
    statement = (
        insert(table)
        .values(key=key, window_start=now, attempts=1)
        .on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "attempts": sa.case((expired, 1), else_=table.c.attempts + 1),
                "window_start": sa.case((expired, now), else_=table.c.window_start),
            },
        )
        .returning(table.c.attempts, table.c.window_start)
    )
    attempts, window_start = session.execute(statement).one()
    return int(attempts), window_start
