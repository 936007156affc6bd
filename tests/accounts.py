"""Users and API keys for tests, made through the same service the app uses."""

from functools import cache

from app.auth import service
from app.auth.passwords import hash_password
from app.core.db import session_scope
from app.core.tables import Role, User

PASSWORD = "correct-horse-battery"


@cache
def _password_hash() -> str:
    return hash_password(PASSWORD)  # scrypt once per test session, not once per user


def make_user(username: str, role: Role | str = Role.admin) -> str:
    """Create ``username`` (password PASSWORD) in the configured database; return a new API key."""
    with session_scope() as session:
        user = User(username=username, password_hash=_password_hash(), role=Role(role))
        session.add(user)
        session.flush()
        _key, secret = service.create_api_key(session=session, user=user, name="tests")
    return secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
