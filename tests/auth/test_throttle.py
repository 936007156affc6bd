"""The login limit holds under parallel guesses: an attempt is counted before its password is
checked, in one atomic step, so 30 wrong passwords at once get exactly 5 real checks for one
username, and exactly 20 for one address (SQLite and Postgres)."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from tests.accounts import PASSWORD, make_user

PARALLEL = 30


def _all_at_once(task: object, count: int) -> list[object]:
    """Run ``task(i)`` in ``count`` threads released together."""
    start = threading.Barrier(count)

    def run(i: int) -> object:
        start.wait()
        return task(i)  # type: ignore[operator]

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def _login(client: TestClient, username: str, password: str) -> int:
    answer = client.post("/login", data={"username": username, "password": password}, follow_redirects=False)
    return answer.status_code


def test_thirty_parallel_wrong_passwords_for_one_user_get_five_checks(anonymous: TestClient) -> None:
    make_user("alice", "member")
    codes = Counter(_all_at_once(lambda i: _login(anonymous, "alice", f"guess-{i}-guess"), PARALLEL))
    assert codes == {401: 5, 429: PARALLEL - 5}, codes  # 401: the password was checked (and wrong)
    assert _login(anonymous, "alice", PASSWORD) == 429  # locked: even the right password waits


def test_thirty_parallel_guesses_from_one_address_get_twenty_checks(anonymous: TestClient) -> None:
    codes = Counter(_all_at_once(lambda i: _login(anonymous, f"user{i}", "guess-guess-guess"), PARALLEL))
    assert codes == {401: 20, 429: PARALLEL - 20}, codes


def test_a_successful_login_gives_its_attempt_back(anonymous: TestClient, configured: Path) -> None:
    from sqlmodel import select

    from app.auth import service
    from app.core.db import session_scope
    from app.core.tables import LoginThrottle

    make_user("bob", "member")
    for _ in range(4):
        assert _login(anonymous, "bob", "wrong-wrong-wrong") == 401
    assert _login(anonymous, "bob", PASSWORD) == 303  # the fifth attempt, and right: bob starts afresh
    for _ in range(5):
        assert _login(anonymous, "bob", "wrong-wrong-wrong") == 401
    assert _login(anonymous, "bob", PASSWORD) == 429
    with session_scope() as session:
        assert service.reserve_login_attempt(session=session, username="carol", ip="testclient") == 0
        rows = {row.key: row.attempts for row in session.exec(select(LoginThrottle)).all()}
    # the address: 9 wrong passwords + the refused try + carol's; bob's success gave its count back
    assert rows["ip:testclient"] == 11 and rows["user:carol"] == 1 and rows["user:bob"] == 6
