"""Who is asking: an API key (``Authorization: Bearer``) or a browser session cookie.

Every route but the login page, static files and health checks depends on ``current_user``.
Requests that change something and ride on a cookie must carry the session's CSRF token
(``X-CSRF-Token`` header or a ``csrf_token`` form field); bearer requests need none, since a
browser never adds that header on its own.
"""

import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.auth import service
from app.core.credentials import user_for_api_key
from app.core.db import read_session, session_scope
from app.core.errors import Forbidden, NotAuthenticated
from app.core.tables import Role

SESSION_COOKIE = "tunedeck_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What a viewer may send besides reads: chatting and voting in the playground, their own account.
VIEWER_MAY_POST = ("/v1/", "/api/v1/playground/", "/account", "/api/v1/me", "/logout")
PASSWORD_PAGE = "/account/password"


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: Role
    via: Literal["session", "api_key"]
    csrf_token: str = ""
    must_change_password: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin

    @property
    def viewer_id(self) -> int | None:
        """The id visibility is checked against; None for admins, who see everything."""
        return None if self.is_admin else self.user_id


async def current_user(request: Request) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal = await run_in_threadpool(_identify, request)  # database reads: off the event loop
    if request.method not in SAFE_METHODS:
        if principal.via == "session":
            await _check_csrf(request, principal)
        if principal.role == Role.viewer and not request.url.path.startswith(VIEWER_MAY_POST):
            raise Forbidden("viewers can only read; ask an admin for the member role")
    if principal.must_change_password and not request.url.path.startswith((PASSWORD_PAGE, "/logout")):
        raise Forbidden(f"change your one-time password first at {PASSWORD_PAGE}")
    request.state.principal = principal
    return principal


def _identify(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise NotAuthenticated("send the API key as 'Authorization: Bearer <key>'")
        with session_scope() as session:  # commits the key's last-used time
            found = user_for_api_key(session=session, secret=secret.strip())
            if found is None:
                raise NotAuthenticated("the API key is not valid (revoked, or never issued)")
            user, _key = found
            assert user.id is not None
            return Principal(user.id, user.username, user.role, "api_key")
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with read_session() as session:
            login = service.user_for_login(session=session, token=token)
        if login is not None:
            user, row = login
            assert user.id is not None
            return Principal(
                user.id, user.username, user.role, "session", row.csrf_token, user.must_change_password
            )
    raise NotAuthenticated("log in, or send an API key as 'Authorization: Bearer <key>'")


async def _check_csrf(request: Request, principal: Principal) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # parsed once; the route reads the same cached form
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, principal.csrf_token):
        raise Forbidden("the form's CSRF token is missing or out of date; reload the page and try again")


def require_admin(principal: "CurrentUser") -> Principal:
    if not principal.is_admin:
        raise Forbidden("only an admin can do this")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(require_admin)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""
