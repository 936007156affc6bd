"""Credentials both servers check: API keys (only their SHA-256 is stored), the token the web
app shows the model server, and the secrets the processes of one installation share."""

import hashlib
import hmac
import secrets
from datetime import timedelta
from functools import lru_cache

import sqlalchemy as sa
from sqlmodel import Session, col, select

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.tables import ApiKey, AppSecret, User
from app.core.timeutil import utcnow

KEY_PREFIX = "td-"
LAST_USED_RESOLUTION = timedelta(seconds=60)  # don't write on every request of a busy script


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def user_for_api_key(*, session: Session, secret: str) -> tuple[User, ApiKey] | None:
    """The active user an unrevoked key belongs to; marks the key used (at most once a minute)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    key = session.exec(select(ApiKey).where(col(ApiKey.key_hash) == sha256(secret))).first()
    if key is None or key.revoked_at is not None:
        return None
    user = session.get(User, key.user_id)
    if user is None or user.disabled:
        return None
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.add(key)
    return user, key


def shared_secret(*, session: Session, name: str) -> str:
    """A random secret stored once per installation (created by whichever process asks first)."""
    row = session.get(AppSecret, name)
    if row is not None:
        return row.value
    value = secrets.token_urlsafe(32)
    try:
        with session.begin_nested():
            session.add(AppSecret(name=name, value=value))
    except sa.exc.IntegrityError:  # another process created it first
        row = session.get(AppSecret, name)
        assert row is not None
        return row.value
    return value


@lru_cache(maxsize=8)
def _stored_internal_token(database_url: str) -> str:
    with session_scope() as session:
        return shared_secret(session=session, name="internal_token")


def internal_token() -> str:
    """The token the web app shows the model server: TUNEDECK_INTERNAL_TOKEN, or one kept in
    the database that every process of this installation can read."""
    settings = get_settings()
    return settings.internal_token or _stored_internal_token(settings.sqlalchemy_url)


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
