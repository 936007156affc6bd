"""HTML: log in and out, your account (password, API keys), and the admin's users and audit log."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from app.auth import service
from app.auth.access import log_action
from app.auth.deps import (
    PASSWORD_PAGE,
    SESSION_COOKIE,
    AdminUser,
    CurrentUser,
    client_ip,
    current_user,
)
from app.auth.passwords import verify_password
from app.auth.service import AccountError
from app.core.config import get_settings
from app.core.db import session_scope
from app.core.scheduling import limit_of
from app.core.tables import Role, User
from app.core.usage import Usage, usage_by_owner
from app.http.deps import DB_INT_MAX, SessionDep, commit, get_session
from app.http.templates import templates

public = APIRouter(include_in_schema=False)  # reachable without logging in
router = APIRouter(include_in_schema=False, dependencies=[Depends(current_user)])


def _same_origin(request: Request) -> bool:
    """Browsers send Origin with every form POST: it must name this site (its Host, the
    X-Forwarded-Host a proxy in front of it set, or one of TUNEDECK_ALLOWED_ORIGINS). No Origin
    at all is a script, not a browser."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")} - {None}
    netloc = origin.split("://", 1)[-1].rstrip("/")
    allowed = {o.strip().rstrip("/") for o in get_settings().allowed_origins.split(",") if o.strip()}
    return origin != "null" and (netloc in hosts or origin.rstrip("/") in allowed)


def _safe_next(target: str | None) -> str:
    """Only paths on this site: never '//evil.example' or 'https://…'."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@public.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return templates.TemplateResponse(request, "pages/login.html", {"next": _safe_next(next), "error": None})


@public.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    ip = client_ip(request)
    target = _safe_next(next)

    def refuse(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
        context = {"next": target, "error": message, "username": username}
        return templates.TemplateResponse(request, "pages/login.html", context, status, headers=headers)

    if not _same_origin(request):
        # Login CSRF: another site's page posting its own account's password would sign this
        # browser in as that account (and what the victim uploads would land there).
        message = (
            "This login came from another site's page. Log in from this page instead. (If this is"
            " tunedeck's own address behind a proxy, an admin adds it to TUNEDECK_ALLOWED_ORIGINS.)"
        )
        return refuse(message, 403)

    # Counted before the password is checked, and committed at once in its own transaction, so
    # that parallel guesses each see the others' counts: only the first few get a real check.
    with session_scope() as throttle:
        wait = service.reserve_login_attempt(session=throttle, username=username, ip=ip)
    if wait:
        message = f"Too many failed logins. Try again in {wait // 60 + 1} minute(s)."
        return refuse(message, 429, {"Retry-After": str(wait)})
    user = service.check_login(session=session, username=username, password=password)
    if user is None:
        service.audit(session=session, user_id=None, username=username, action="login_failed", ip=ip)
        commit(session)
        return refuse("Wrong username or password.", 401)
    service.release_login_attempt(session=session, username=username, ip=ip)
    token, _ = service.start_login(session=session, user=user)
    service.audit(session=session, user_id=user.id, username=user.username, action="login", ip=ip)
    commit(session)
    response = RedirectResponse(PASSWORD_PAGE if user.must_change_password else target, status_code=303)
    _set_login_cookie(request, response, token)
    return response


def _set_login_cookie(request: Request, response: Response, token: str) -> None:
    """HttpOnly (no script reads it), SameSite=Lax (no cross-site POST carries it), Secure on https."""
    secure = get_settings().cookie_secure
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(service.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https" if secure is None else secure,
        path="/",
    )


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        service.end_login(session=session, token=token)
    log_action(session, request, user, "logout", "", "")
    commit(session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _account_page(
    request: Request,
    session: Session,
    user: CurrentUser,
    *,
    new_key: str | None = None,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    context = {
        "usage": usage_by_owner(session=session).get(user.user_id, Usage()),
        "job_limit": limit_of(session.get(User, user.user_id)),
        "keys": service.list_api_keys(session=session, user_id=user.user_id),
        "new_key": new_key,
        "error": error,
        "notice": notice,
    }
    return templates.TemplateResponse(request, "pages/account.html", context, status)


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    return _account_page(request, session, user)


@router.get(PASSWORD_PAGE, response_class=HTMLResponse)
def password_page(request: Request, user: CurrentUser) -> Response:
    return templates.TemplateResponse(request, "pages/password.html", {"error": None})


@router.post(PASSWORD_PAGE, response_class=HTMLResponse)
def change_password(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    current_password: Annotated[str, Form(max_length=1024)],
    new_password: Annotated[str, Form(max_length=1024)],
    revoke_keys: Annotated[bool, Form()] = False,
) -> Response:
    account = session.get(User, user.user_id)
    assert account is not None
    if not verify_password(current_password, account.password_hash):
        context = {"error": "The current password is wrong."}
        return templates.TemplateResponse(request, "pages/password.html", context, 400)
    try:
        service.set_password(session=session, user=account, password=new_password)
    except AccountError as exc:
        return templates.TemplateResponse(request, "pages/password.html", {"error": str(exc)}, 400)
    token, _ = service.start_login(session=session, user=account)  # other logins end; this one goes on
    log_action(session, request, user, "password_changed", "", "")
    changed = "1"
    if revoke_keys:  # API keys outlive a new password unless asked (scripts keep running)
        revoked = service.revoke_all_api_keys(session=session, user_id=user.user_id)
        log_action(session, request, user, "api_keys_revoked", "api_key", "*", count=len(revoked))
        changed = "keys"
    commit(session)
    response = RedirectResponse(f"/account?changed={changed}", status_code=303)
    _set_login_cookie(request, response, token)
    return response


@router.post("/account/keys", response_class=HTMLResponse)
def create_key(
    request: Request, session: SessionDep, user: CurrentUser, name: Annotated[str, Form(max_length=200)]
) -> Response:
    account = session.get(User, user.user_id)
    assert account is not None
    try:
        key, secret = service.create_api_key(session=session, user=account, name=name)
    except AccountError as exc:
        return _account_page(request, session, user, error=str(exc), status=400)
    log_action(session, request, user, "api_key_created", "api_key", key.id, name=key.name)
    commit(session)
    return _account_page(request, session, user, new_key=secret)


@router.post("/account/keys/revoke-all")
def revoke_all_keys(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    revoked = service.revoke_all_api_keys(session=session, user_id=user.user_id)
    log_action(session, request, user, "api_keys_revoked", "api_key", "*", count=len(revoked))
    commit(session)
    return _account_page(request, session, user, notice=f"Revoked {len(revoked)} API key(s).")


@router.post("/account/keys/{key_id}/revoke")
def revoke_key(request: Request, session: SessionDep, user: CurrentUser, key_id: str) -> Response:
    try:
        key = service.revoke_api_key(session=session, user_id=user.user_id, key_id=key_id)
    except AccountError as exc:
        return _account_page(request, session, user, error=str(exc), status=exc.status)
    log_action(session, request, user, "api_key_revoked", "api_key", key.id)
    commit(session)
    return RedirectResponse("/account", status_code=303)


def _users_page(
    request: Request, session: Session, *, error: str | None = None, status: int = 200
) -> Response:
    context = {
        "users": service.list_users(session=session),
        "roles": list(Role),
        "error": error,
        "usage": usage_by_owner(session=session),
        "default_limit": get_settings().max_concurrent_jobs_per_user,
    }
    return templates.TemplateResponse(request, "pages/users.html", context, status)


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    return _users_page(request, session)


@router.post("/admin/users", response_class=HTMLResponse)
def add_user(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    role: Annotated[Role, Form()] = Role.member,
) -> Response:
    try:
        user = service.create_user(session=session, username=username, password=password, role=role)
    except AccountError as exc:
        session.rollback()
        return _users_page(request, session, error=str(exc), status=exc.status)
    log_action(session, request, admin, "user_created", "user", user.username, role=role.value)
    commit(session)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{username}", response_class=HTMLResponse)
def update_user(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    username: str,
    role: Annotated[Role, Form()],
    disabled: Annotated[bool, Form()] = False,
    max_concurrent_jobs: Annotated[str | None, Form(max_length=6)] = None,
) -> Response:
    try:
        user = service.get_user(session=session, username=username)
        service.set_role(session=session, user=user, role=role, disabled=disabled)
        if max_concurrent_jobs is not None:  # empty: back to the default
            limit = max_concurrent_jobs.strip()
            if limit and not limit.isdigit():
                raise AccountError("the job limit is a whole number (0: no limit)", "max_concurrent_jobs")
            service.set_job_limit(session=session, user=user, limit=int(limit) if limit else None)
    except AccountError as exc:
        session.rollback()
        return _users_page(request, session, error=str(exc), status=exc.status)
    log_action(
        session,
        request,
        admin,
        "user_updated",
        "user",
        username,
        role=role.value,
        disabled=disabled,
        max_concurrent_jobs=max_concurrent_jobs,
    )
    commit(session)
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    user: str | None = None,
    action: str | None = None,
    before: Annotated[int | None, Query(ge=0, le=DB_INT_MAX)] = None,
) -> Response:
    events = service.list_audit(session=session, limit=100, before=before, username=user, action=action)
    context = {"events": events, "user": user or "", "action": action or ""}
    return templates.TemplateResponse(request, "pages/audit.html", context)
