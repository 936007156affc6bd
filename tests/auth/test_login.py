"""Logging in from the browser: cookies, throttling, the one-time first admin, the CLI."""

import re
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.accounts import PASSWORD, make_user
from tests.e2e.support import TUNEDECK


def _login(client: TestClient, username: str, password: str, next: str = "/") -> object:
    return client.post(
        "/login", data={"username": username, "password": password, "next": next}, follow_redirects=False
    )


def test_login_sets_a_locked_down_session_cookie_and_logout_ends_it(anonymous: TestClient) -> None:
    make_user("alice", "member")
    answer = _login(anonymous, "alice", PASSWORD, next="/jobs")
    assert answer.status_code == 303 and answer.headers["location"] == "/jobs"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("tunedeck_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    page = anonymous.get("/jobs")
    assert page.status_code == 200 and "alice" in page.text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    out = anonymous.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    anonymous.cookies.set("tunedeck_session", cookie.split(";")[0].split("=", 1)[1])  # replay the old one
    assert anonymous.get("/api/v1/me").status_code == 401


def test_login_refuses_outside_redirects_and_says_nothing_about_which_part_was_wrong(
    anonymous: TestClient,
) -> None:
    make_user("alice", "member")
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        assert _login(anonymous, "alice", PASSWORD, next=target).headers["location"] == "/"  # type: ignore[attr-defined]
    wrong_password = _login(anonymous, "alice", "nope-nope-nope")
    no_such_user = _login(anonymous, "mallory", PASSWORD)
    for answer in (wrong_password, no_such_user):
        assert answer.status_code == 401  # type: ignore[attr-defined]
        assert "Wrong username or password." in answer.text  # type: ignore[attr-defined]


def test_a_login_posted_from_another_sites_page_is_refused(anonymous: TestClient) -> None:
    """Login CSRF: a page elsewhere must not sign this browser in to the attacker's account."""
    make_user("mallory", "member")
    body = {"username": "mallory", "password": PASSWORD, "next": "/"}
    for origin in ("https://evil.example", "null", "http://testserver.evil.example"):
        refused = anonymous.post("/login", data=body, headers={"Origin": origin}, follow_redirects=False)
        assert refused.status_code == 403 and "another site" in refused.text, origin
        assert "set-cookie" not in refused.headers and anonymous.get("/api/v1/me").status_code == 401
    same_site = {"Origin": "http://testserver"}
    ours = anonymous.post("/login", data=body, headers=same_site, follow_redirects=False)
    assert ours.status_code == 303 and anonymous.get("/api/v1/me").json()["username"] == "mallory"


def test_behind_a_proxy_that_rewrites_host_the_public_origin_can_be_allowed(
    anonymous: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.config import get_settings

    make_user("alice", "member")
    body = {"username": "alice", "password": PASSWORD, "next": "/"}
    public = {"Origin": "https://tunedeck.example.com"}  # Host stays "testserver", as behind the proxy
    refused = anonymous.post("/login", data=body, headers=public, follow_redirects=False)
    assert refused.status_code == 403 and "TUNEDECK_ALLOWED_ORIGINS" in refused.text
    monkeypatch.setenv("TUNEDECK_ALLOWED_ORIGINS", "https://tunedeck.example.com/")
    get_settings.cache_clear()
    assert anonymous.post("/login", data=body, headers=public, follow_redirects=False).status_code == 303


def test_repeated_failures_lock_the_username_for_a_while(anonymous: TestClient, client: TestClient) -> None:
    make_user("alice", "member")
    for _ in range(5):
        assert _login(anonymous, "alice", "guess-guess-guess").status_code == 401  # type: ignore[attr-defined]
    locked = _login(anonymous, "alice", PASSWORD)  # even the right password, for now
    assert locked.status_code == 429  # type: ignore[attr-defined]
    assert "Too many failed logins" in locked.text  # type: ignore[attr-defined]
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60  # type: ignore[attr-defined]
    # other people are not locked out by alice's attacker
    make_user("bob", "member")
    assert _login(anonymous, "bob", PASSWORD).status_code == 303  # type: ignore[attr-defined]
    failures = client.get("/api/v1/audit", params={"action": "login_failed"}).json()["data"]
    assert len(failures) == 5 and {f["username"] for f in failures} == {"alice"}


def test_a_one_time_password_must_be_changed_before_anything_else(
    anonymous: TestClient, configured: Path
) -> None:
    from sqlmodel import select

    from app.cli import ensure_first_admin
    from app.core.db import session_scope
    from app.core.tables import User

    ensure_first_admin()
    with session_scope() as session:
        admin = session.exec(select(User)).one()
        assert admin.username == "admin" and admin.role == "admin" and admin.must_change_password
    ensure_first_admin()  # a second start makes nobody
    with session_scope() as session:
        assert len(session.exec(select(User)).all()) == 1


def test_first_start_prints_the_one_time_password_once_and_it_leads_to_the_password_page(
    anonymous: TestClient, configured: Path, capsys: object
) -> None:
    from app.cli import ensure_first_admin

    ensure_first_admin()
    printed = capsys.readouterr().out  # type: ignore[attr-defined]
    password = re.search(r"one-time password\s+(\S+)", printed).group(1)  # type: ignore[union-attr]
    answer = _login(anonymous, "admin", password, next="/jobs")
    assert answer.headers["location"] == "/account/password"  # type: ignore[attr-defined]
    blocked = anonymous.get("/jobs", headers={"Accept": "text/html"})
    assert blocked.status_code == 403 and "change your one-time password" in blocked.text
    form = anonymous.get("/account/password").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    short = anonymous.post(
        "/account/password", data={"current_password": password, "new_password": "short", "csrf_token": token}
    )
    assert short.status_code == 400 and "at least 8 characters" in short.text
    changed = anonymous.post(
        "/account/password",
        data={"current_password": password, "new_password": "a-better-password", "csrf_token": token},
        follow_redirects=False,
    )
    assert changed.status_code == 303
    assert anonymous.get("/jobs").status_code == 200
    assert _login(anonymous, "admin", password).status_code == 401  # type: ignore[attr-defined]


def test_the_account_page_makes_and_revokes_keys(anonymous: TestClient) -> None:
    make_user("alice", "member")
    _login(anonymous, "alice", PASSWORD)
    token = re.search(r'name="csrf-token" content="([^"]+)"', anonymous.get("/account").text).group(1)  # type: ignore[union-attr]
    made = anonymous.post("/account/keys", data={"name": "laptop", "csrf_token": token})
    secret = re.search(r'id="new-key-value">(td-[^<]+)<', made.text).group(1)  # type: ignore[union-attr]
    with TestClient(anonymous.app, headers={"Authorization": f"Bearer {secret}"}) as script:
        assert script.get("/api/v1/me").json()["username"] == "alice"
        assert secret not in anonymous.get("/account").text  # shown once
        key_id = re.search(r"/account/keys/(key-[0-9a-f]+)/revoke", anonymous.get("/account").text).group(1)  # type: ignore[union-attr]
        anonymous.post(f"/account/keys/{key_id}/revoke", data={"csrf_token": token})
        assert script.get("/api/v1/me").status_code == 401
    assert "revoked" in anonymous.get("/account").text


def test_scripts_get_an_admin_and_a_key_without_the_browser(
    anonymous: TestClient, configured: Path, database_url: str
) -> None:
    import os

    env = {**os.environ, "DATABASE_URL": database_url, "TUNEDECK_DATA_DIR": str(configured)}
    made = subprocess.run(
        [TUNEDECK, "create-admin", "--username", "ops", "--password", "ops-password-1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert made.stdout.strip() == "created admin 'ops'"
    again = subprocess.run(
        [TUNEDECK, "create-admin", "--username", "ops", "--password", "ops-password-1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "the username 'ops' is taken" in again.stderr
    key = subprocess.run(
        [TUNEDECK, "api-key", "create", "--user", "ops", "--name", "deploy"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert key.startswith("td-") and "ops-password-1" not in made.stderr + made.stdout
    with TestClient(anonymous.app, headers={"Authorization": f"Bearer {key}"}) as script:
        me = script.get("/api/v1/me").json()
        assert me["username"] == "ops" and me["role"] == "admin"
    assert _login(anonymous, "ops", "ops-password-1").status_code == 303  # type: ignore[attr-defined]


def test_the_api_docs_and_schema_want_a_login_and_a_browser_session_is_enough(anonymous: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        page = anonymous.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next="), path
        assert anonymous.get(path, headers={"Accept": "application/json"}).status_code == 401, path
    make_user("alice", "viewer")
    assert _login(anonymous, "alice", PASSWORD).status_code == 303  # type: ignore[attr-defined]
    docs = anonymous.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    schema = anonymous.get("/openapi.json").json()
    assert "/api/v1/fine_tuning/jobs" in schema["paths"] and "/docs" not in schema["paths"]
    assert anonymous.get("/redoc").status_code == 200


def test_api_keys_outlive_a_password_change_unless_revoked_and_revoke_all_ends_them(
    anonymous: TestClient, client: TestClient
) -> None:
    """The choice: keys live until revoked (scripts keep running after a password change); the
    Account page and the password form say so, and offer to revoke them all."""
    from tests.accounts import bearer

    key = make_user("alice", "member")
    assert _login(anonymous, "alice", PASSWORD).status_code == 303  # type: ignore[attr-defined]
    account = anonymous.get("/account").text
    assert "A key works until you revoke it, also after you change your password" in account
    assert 'id="revoke-all-keys"' in account
    token = re.search(r'name="csrf-token" content="([^"]+)"', account).group(1)  # type: ignore[union-attr]
    form = anonymous.get("/account/password").text
    assert "API keys stay valid after a password change" in form
    changed = anonymous.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "a-new-password-1", "csrf_token": token},
        follow_redirects=False,
    )
    assert changed.status_code == 303 and changed.headers["location"] == "/account?changed=1"
    with TestClient(anonymous.app, headers=bearer(key)) as script:
        assert script.get("/api/v1/me").json()["username"] == "alice"  # still works
        second = script.post("/api/v1/me/api_keys", json={"name": "ci"}).json()["key"]
        revoked = script.delete("/api/v1/me/api_keys")
        assert revoked.status_code == 200 and len(revoked.json()["revoked"]) == 2
        assert script.get("/api/v1/me").status_code == 401
    with TestClient(anonymous.app, headers=bearer(second)) as other:
        assert other.get("/api/v1/me").status_code == 401
    page = anonymous.get("/account").text  # the browser login is not a key: it goes on
    assert "revoked" in page and 'id="revoke-all-keys"' not in page
    third = make_user("bob", "member")
    assert _login(anonymous, "bob", PASSWORD).status_code == 303  # type: ignore[attr-defined]
    token = re.search(r'name="csrf-token" content="([^"]+)"', anonymous.get("/account").text).group(1)  # type: ignore[union-attr]
    anonymous.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": "b-new-password-1",
            "csrf_token": token,
            "revoke_keys": "true",
        },
        follow_redirects=False,
    )
    assert "All your API keys were revoked" in anonymous.get("/account?changed=keys").text
    with TestClient(anonymous.app, headers=bearer(third)) as script:
        assert script.get("/api/v1/me").status_code == 401
    actions = [e["action"] for e in client.get("/api/v1/audit").json()["data"]]
    assert actions.count("api_keys_revoked") == 2
