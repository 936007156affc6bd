"""Webhooks end to end: a real HTTP receiver, real jobs, the real outbox and sender."""

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from app.core.config import Settings, get_settings
from app.core.db import read_session, session_scope
from app.core.ids import new_id
from app.core.leases import reap_expired
from app.core.tables import AuditEvent, DeliveryStatus, Job, JobStatus, User, WebhookDelivery
from app.core.timeutil import utcnow
from app.jobs.service import cancel_job
from tests.accounts import bearer, make_user
from tests.e2e.support import free_port
from tests.factories import INSTRUCTION_ROWS, create_job, run_job, upload
from tests.webhooks.receiver import Receiver
from worker.deliveries import backoff_seconds, deliver_due
from worker.training.monitor import Alert
from worker.training.reporting import JobReporter

ROLES = {"admin": "admin", "alice": "member", "bob": "member", "vera": "viewer"}


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver on loopback, which webhooks may reach only because the admin allowed it."""
    monkeypatch.setenv("TUNEDECK_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    get_settings.cache_clear()
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def team(configured: Path) -> dict[str, TestClient]:
    """API clients without the app's lifespan: no background sender runs, the test sends."""
    from app.main import create_app

    app = create_app()
    return {name: TestClient(app, headers=bearer(make_user(name, role))) for name, role in ROLES.items()}


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch, configured: Path) -> None:
    monkeypatch.setenv("TUNEDECK_WEBHOOK_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("TUNEDECK_WEBHOOK_MAX_ATTEMPTS", "4")
    get_settings.cache_clear()


def add_hook(client: TestClient, url: str, **body: object) -> dict[str, str]:
    answer = client.post("/api/v1/webhooks", json={"url": url, **body})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def make_job(owner: str, *, private: bool = False, **fields: object) -> str:
    """A queued job row owned by ``owner`` (no dataset or model needed to cancel or reap it)."""
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == owner)).one()
        job = Job(
            id=new_id("ftjob"),
            model="tiny-llama",
            training_file="file-test",
            owner_id=user.id,
            owner=owner,
            private=private,
            **fields,
        )
        session.add(job)
    return job.id


def log_of(hook_id: str) -> list[WebhookDelivery]:
    with read_session() as session:
        query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)
        return list(session.exec(query.order_by(col(WebhookDelivery.created_at))).all())


def drain(timeout: float = 10.0) -> None:
    """Send until nothing is pending any more, retries included."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliver_due()
        with read_session() as session:
            pending = session.exec(select(WebhookDelivery).where(WebhookDelivery.status == "pending")).first()
        if pending is None:
            return
        time.sleep(0.02)
    raise AssertionError("deliveries still pending")


def wait_for(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_job_that_succeeds_is_posted_once_signed(
    client: TestClient, tiny_model: str, receiver: Receiver
) -> None:
    hook = add_hook(client, receiver.url, events=["job.succeeded", "job.failed"])
    job_id = create_job(client, tiny_model, upload(client, INSTRUCTION_ROWS[:8]))
    assert run_job(job_id, "test-worker") == "succeeded"
    assert receiver.received == []  # nothing in the web app or the training task POSTs it ...
    drain()  # ... the short lane does (here in-process; tests/webhooks/test_two_web_processes.py)
    assert log_of(hook["id"])[0].status == DeliveryStatus.succeeded
    [post] = receiver.received
    assert post.headers["x-tunedeck-event"] == "job.succeeded" and post.signed_with(hook["secret"])
    assert not post.signed_with(hook["secret"] + "x")
    job = post.payload["job"]
    assert post.payload["event"] == "job.succeeded"
    assert (job["id"], job["status"], job["fine_tuned_model"]) == (
        job_id,
        "succeeded",
        f"{tiny_model}:{job_id}",
    )
    [entry] = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert entry["id"] == post.delivery_id and entry["attempts"] == 1 and entry["last_status_code"] == 204


def test_failures_are_retried_with_backoff_then_given_up(
    team: dict[str, TestClient], receiver: Receiver, quick_retries: None
) -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3, 30)] == [0.05, 0.1, 0.2, 3600.0]
    defaults = Settings.model_fields
    assert (defaults["webhook_backoff_seconds"].default, defaults["webhook_max_attempts"].default) == (5.0, 6)
    hook = add_hook(team["alice"], receiver.url)
    receiver.fail_first = 2
    assert team["alice"].post(f"/api/v1/fine_tuning/jobs/{make_job('alice')}/cancel").status_code == 200
    drain()
    assert len(receiver.received) == 3 and len({r.delivery_id for r in receiver.received}) == 1
    [entry] = team["alice"].get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert (entry["status"], entry["attempts"], entry["last_status_code"]) == ("succeeded", 3, 204)

    receiver.always_fail = True
    closed = f"http://127.0.0.1:{free_port()}/nobody-listens"
    dead = add_hook(team["alice"], closed)
    team["alice"].post(f"/api/v1/fine_tuning/jobs/{make_job('alice')}/cancel")
    drain()
    failed = log_of(hook["id"])[-1]
    assert (failed.status, failed.attempts, failed.last_status_code) == ("failed", 4, 500)
    assert failed.last_error == "the receiver answered HTTP 500" and len(receiver.received) == 3 + 4
    [refused] = log_of(dead["id"])
    assert refused.status == "failed" and refused.attempts == 4 and "ConnectError" in str(refused.last_error)
    assert dead["secret"] not in str(refused.last_error) and refused.last_status_code is None


def test_each_hook_hears_only_of_jobs_its_owner_may_see(
    team: dict[str, TestClient], receiver: Receiver
) -> None:
    hooks = {name: add_hook(team[name], receiver.url)["id"] for name in ("alice", "bob")}
    hooks["admin"] = add_hook(team["admin"], receiver.url, scope="all")["id"]
    refused = team["bob"].post("/api/v1/webhooks", json={"url": receiver.url, "scope": "all"})
    assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
    public, private = make_job("alice"), make_job("alice", private=True)
    for job_id in (public, private):
        assert team["alice"].post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel").status_code == 200
    heard = {name: [(d.event, d.job_id) for d in log_of(hook)] for name, hook in hooks.items()}
    cancelled = [("job.cancelled", public), ("job.cancelled", private)]
    assert heard == {"alice": cancelled, "bob": [], "admin": cancelled}

    # an admin's project hook, once its owner is a member again, hears only of public jobs
    with session_scope() as session:
        session.exec(select(User).where(User.username == "admin")).one().role = "member"  # type: ignore[assignment]
    public, private = make_job("bob"), make_job("bob", private=True)
    for job_id in (public, private):
        assert team["bob"].post(f"/api/v1/fine_tuning/jobs/{job_id}/cancel").status_code == 200
    assert [d.job_id for d in log_of(hooks["admin"])][-1] == public and len(log_of(hooks["admin"])) == 3
    assert [d.job_id for d in log_of(hooks["bob"])] == [public, private]


def test_reaped_jobs_alerts_and_worker_endings_are_emitted_in_their_transaction(
    team: dict[str, TestClient], receiver: Receiver
) -> None:
    hook = add_hook(team["alice"], receiver.url)["id"]
    past = utcnow() - timedelta(minutes=5)
    lost = make_job("alice", status=JobStatus.running, attempt=3, max_attempts=3, lease_expires_at=past)
    assert lost in reap_expired()
    running = make_job("alice", status=JobStatus.running, attempt=1)
    with JobReporter(running, 1) as reporter:
        reporter.alert(Alert("overfitting", 7, "validation loss rose twice", ("more dropout",)))
        reporter.flush()
        reporter.set_status(JobStatus.failed, finished_at=utcnow())
    rolled_back = make_job("alice")
    with pytest.raises(RuntimeError), session_scope() as session:
        cancel_job(session=session, job_id=rolled_back)
        raise RuntimeError("the request failed after the cancel")
    log = log_of(hook)
    assert [(d.event, d.job_id) for d in log] == [
        ("job.failed", lost),
        ("job.alert", running),
        ("job.failed", running),
    ]
    assert log[1].payload["alert"] == {
        "message": "validation loss rose twice",
        "kind": "overfitting",
        "step": 7,
        "remedies": ["more dropout"],
        "fatal": False,
    }
    assert "gave up after 3 of 3 attempts" in log[0].payload["job"]["error"]["message"]


def test_concurrent_senders_post_each_delivery_once(team: dict[str, TestClient], receiver: Receiver) -> None:
    hook = add_hook(team["alice"], receiver.url)["id"]
    for _ in range(12):
        team["alice"].post(f"/api/v1/fine_tuning/jobs/{make_job('alice')}/cancel")
    start = threading.Barrier(2)
    sent: list[int] = []

    def sender() -> None:
        start.wait()
        sent.append(deliver_due(limit=50))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [r.delivery_id for r in receiver.received]
    assert sum(sent) == 12 and len(ids) == 12 and set(ids) == {d.id for d in log_of(hook)}
    assert all(d.status == "succeeded" and d.attempts == 1 for d in log_of(hook))


def test_the_api_shows_the_secret_once_and_only_to_the_owner(
    team: dict[str, TestClient], receiver: Receiver
) -> None:
    alice, bob = team["alice"], team["bob"]
    hook = add_hook(alice, receiver.url, events=["job.failed"])
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["job.failed"]
    listed = alice.get("/api/v1/webhooks").json()["data"]
    assert [h["id"] for h in listed] == [hook["id"]] and listed[0]["secret"] is None
    assert alice.get(f"/api/v1/webhooks/{hook['id']}").json()["secret"] is None
    assert bob.get("/api/v1/webhooks").json()["data"] == []
    assert [h["id"] for h in team["admin"].get("/api/v1/webhooks").json()["data"]] == [hook["id"]]
    for method, path in (
        ("GET", ""),
        ("GET", "/deliveries"),
        ("POST", "/test"),
        ("PATCH", ""),
        ("DELETE", ""),
    ):
        answer = bob.request(
            method, f"/api/v1/webhooks/{hook['id']}{path}", json={} if method == "PATCH" else None
        )
        assert answer.status_code == 404, (method, path)

    ping = alice.post(f"/api/v1/webhooks/{hook['id']}/test").json()  # queued for the short lane
    assert (ping["event"], ping["status"], ping["attempts"]) == ("ping", "pending", 0)
    drain()
    [sent] = alice.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["data"]
    assert (sent["id"], sent["status"], sent["attempts"]) == (ping["id"], "succeeded", 1)
    assert receiver.received[0].signed_with(hook["secret"]) and receiver.events() == ["ping"]
    assert bob.post(f"/api/v1/webhooks/deliveries/{ping['id']}/redeliver").status_code == 404
    again = alice.post(f"/api/v1/webhooks/deliveries/{ping['id']}/redeliver").json()
    drain()
    assert again["id"] != ping["id"] and again["payload"] == ping["payload"] and len(receiver.received) == 2

    for url, words in (("ftp://example.com/x", "http:// or https://"), ("https://", "needs a host")):
        bad = alice.post("/api/v1/webhooks", json={"url": url})
        assert bad.status_code == 422 and words in bad.json()["error"]["message"], bad.text
    unknown = alice.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["job.exploded"]})
    assert unknown.status_code == 422 and "job.exploded" in unknown.json()["error"]["message"]
    assert team["vera"].post("/api/v1/webhooks", json={"url": receiver.url}).status_code == 403

    assert alice.delete(f"/api/v1/webhooks/{hook['id']}").json()["deleted"] is True
    assert alice.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404 and log_of(hook["id"]) == []
    with read_session() as session:
        actions = session.exec(select(AuditEvent.action).where(AuditEvent.object_id == hook["id"])).all()
    assert actions == ["webhook_created", "webhook_deleted"]


def test_the_page_lists_hooks_shows_the_secret_once_and_refuses_viewers(
    team: dict[str, TestClient], receiver: Receiver
) -> None:
    alice = team["alice"]
    assert 'href="/account/webhooks"' in alice.get("/account").text
    page = alice.get("/account/webhooks")
    assert page.status_code == 200 and 'name="events"' in page.text and 'name="scope"' not in page.text
    created = alice.post(
        "/account/webhooks", data={"url": receiver.url, "events": ["job.succeeded", "job.alert"]}
    )
    assert created.status_code == 200 and 'id="new-secret-value"' in created.text
    [hook] = alice.get("/api/v1/webhooks").json()["data"]
    assert hook["events"] == ["job.succeeded", "job.alert"]
    assert alice.post(f"/account/webhooks/{hook['id']}/test", follow_redirects=False).status_code == 303
    assert "pending" in alice.get("/account/webhooks").text  # until the short lane has sent it
    drain()
    again = alice.get("/account/webhooks").text
    assert receiver.url in again and "new-secret" not in again and "ping" in again and "succeeded" in again
    bad = alice.post("/account/webhooks", data={"url": "ftp://example.com", "events": ["job.failed"]})
    assert bad.status_code == 422 and "http:// or https://" in bad.text
    assert 'name="scope"' in team["admin"].get("/account/webhooks").text
    refused = team["vera"].post("/account/webhooks", data={"url": receiver.url, "events": ["job.failed"]})
    assert refused.status_code == 403 and "viewers cannot create webhooks" in refused.text


def test_hooks_to_internal_addresses_are_refused_unless_an_admin_allows_their_network(
    team: dict[str, TestClient], receiver: Receiver, quick_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = team["alice"]
    allowed = add_hook(alice, receiver.url)  # while 127.0.0.0/8 is allowed
    monkeypatch.setenv("TUNEDECK_WEBHOOK_ALLOWED_NETWORKS", "")
    get_settings.cache_clear()
    for url in (
        receiver.url,
        "http://localhost:8000/x",
        "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "http://10.1.2.3/hooks",
        "http://[::1]:8000/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://2130706433/x",  # 127.0.0.1 as one number
        "http://0.0.0.0:6379/",
    ):
        refused = alice.post("/api/v1/webhooks", json={"url": url})
        assert refused.status_code == 422, (url, refused.text)
        message = refused.json()["error"]["message"]
        assert "internal address" in message and "TUNEDECK_WEBHOOK_ALLOWED_NETWORKS" in message, url
    page = alice.post("/account/webhooks", data={"url": "http://127.0.0.1/x", "events": ["job.failed"]})
    assert page.status_code == 422 and "internal address" in page.text
    assert [h["id"] for h in alice.get("/api/v1/webhooks").json()["data"]] == [allowed["id"]]

    # The hook made while loopback was allowed: each POST checks again, and nothing is sent.
    alice.post(f"/api/v1/fine_tuning/jobs/{make_job('alice')}/cancel")
    drain()
    [refused_delivery] = log_of(allowed["id"])
    assert refused_delivery.status == "failed" and "internal address" in str(refused_delivery.last_error)
    assert receiver.received == []


def test_a_name_is_looked_up_once_per_post_and_the_post_goes_to_the_address_checked(
    team: dict[str, TestClient], receiver: Receiver, quick_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that answers an allowed address when checked and an internal one a
    moment later (when an HTTP client would look it up again) still gets the POST at the first."""
    import socket

    port = receiver.url.split(":")[2].split("/")[0]
    name_url = receiver.url.replace("127.0.0.1", "hooks.rebind.test")
    answers = ["127.0.0.1"]  # what the name resolves to; the last answer repeats
    real = socket.getaddrinfo

    def rebinding(host: object, *args: object, **kwargs: object) -> object:
        if host != "hooks.rebind.test":
            return real(host, *args, **kwargs)  # type: ignore[arg-type]
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    hook = add_hook(team["alice"], name_url)
    answers[:] = ["127.0.0.1", "10.9.9.9"]  # allowed at the check, internal from then on
    team["alice"].post(f"/api/v1/fine_tuning/jobs/{make_job('alice')}/cancel")
    drain()
    [post] = receiver.received
    assert post.headers["host"] == f"hooks.rebind.test:{port}"  # the name, at the checked address
    assert log_of(hook["id"])[0].status == "succeeded"
    assert answers == ["10.9.9.9"]  # looked up once: nothing asked again before connecting


def test_a_failed_lookup_is_a_failed_delivery_never_a_second_lookup_by_the_http_client(
    team: dict[str, TestClient], receiver: Receiver, quick_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that answers SERVFAIL when the POST checks it and loopback next: nothing may be sent
    to an address that was not vetted in the same attempt (the HTTP client must not resolve again)."""
    import socket

    name_url = receiver.url.replace("127.0.0.1", "hooks.servfail.test")
    answers: list[str | None] = ["8.8.8.8"]  # public when the hook is made
    real = socket.getaddrinfo

    def flaky(host: object, *args: object, **kwargs: object) -> object:
        if host != "hooks.servfail.test":
            return real(host, *args, **kwargs)  # type: ignore[arg-type]
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        if address is None:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    hook = add_hook(team["alice"], name_url)
    monkeypatch.setenv("TUNEDECK_WEBHOOK_ALLOWED_NETWORKS", "")  # loopback is internal again
    get_settings.cache_clear()
    answers[:] = [None, "127.0.0.1"]  # SERVFAIL at the check, then the receiver on loopback
    team["alice"].post(f"/api/v1/fine_tuning/jobs/{make_job('alice')}/cancel")
    assert deliver_due() == 1  # one attempt
    [delivery] = log_of(hook["id"])
    assert receiver.received == []
    assert delivery.status == "pending" and delivery.attempts == 1  # retried later, like any failure
    assert "could not resolve 'hooks.servfail.test'" in str(delivery.last_error)


@pytest.mark.parametrize(
    "host",
    [
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of the metadata service
        "[64:ff9b:1::a00:1]",  # local-use NAT64 of 10.0.0.1
        "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
        "[2002:a00:1::]",  # 6to4 of 10.0.0.1
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo, client 127.0.0.1
        "[::ffff:a00:1]",  # IPv4-mapped 10.0.0.1
        "[::127.0.0.1]",  # IPv4-compatible
        "[::ffff:0:a9fe:a9fe]",  # IPv4-translated (SIIT) 169.254.169.254
    ],
)
def test_ipv6_addresses_that_carry_an_internal_ipv4_address_are_refused_like_it(
    team: dict[str, TestClient], monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("TUNEDECK_WEBHOOK_ALLOWED_NETWORKS", "")
    get_settings.cache_clear()
    refused = team["alice"].post("/api/v1/webhooks", json={"url": f"http://{host}/hooks"})
    assert refused.status_code == 422, refused.text
    assert "which carries" in refused.json()["error"]["message"]
    public = team["alice"].post("/api/v1/webhooks", json={"url": "http://[64:ff9b::808:808]/hooks"})
    assert public.status_code == 200, public.text  # NAT64 of a public address is public
