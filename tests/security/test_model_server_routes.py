"""The web app's /v1 pass-through reaches only the model server's /v1 routes it means to, and the
model server's health check says nothing about models without a key (a real `tunedeck run`)."""

import httpx
import pytest

from tests.e2e.support import Instance, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def model_server_up(instance: Instance) -> None:
    """`tunedeck run` answers before its model server has imported torch: wait for both."""

    def up() -> bool:
        try:
            return httpx.get(instance.url + "/v1/models", headers=instance.auth, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=120, interval=0.5, message="the model server")


TRAVERSALS = [
    "/v1/models/..%2F..%2Fhealthz",
    "/v1/models/..%2F..%2Fmetrics",
    "/v1/models/..%2F..%2Fdocs",
    "/v1/models/..%2F..%2Fopenapi.json",
    "/v1/models/x%2F..%2F..%2F..%2Fhealthz",
    "/v1/models/%2E%2E",
    "/v1/models/..",
    "/v1/models/..%5C..%5Chealthz",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_a_model_name_cannot_walk_to_the_model_servers_other_routes(instance: Instance, path: str) -> None:
    answer = httpx.get(instance.url + path, headers=instance.auth, timeout=30)
    assert answer.status_code == 404, (path, answer.status_code, answer.text[:200])
    # (the client itself may normalise a bare '..' away: then it is the web app's own 404)
    assert answer.json()["error"]["code"] in ("model_not_found", None)
    assert "loaded" not in answer.text and "tunedeck_" not in answer.text


def test_the_pass_through_still_serves_real_names(instance: Instance) -> None:
    listed = httpx.get(instance.url + "/v1/models", headers=instance.auth, timeout=30).json()["data"]
    assert "tiny-llama" in [m["id"] for m in listed]
    one = httpx.get(instance.url + "/v1/models/tiny-llama", headers=instance.auth, timeout=30)
    assert one.status_code == 200 and one.json()["id"] == "tiny-llama"


def test_the_model_servers_health_says_which_models_are_loaded_only_to_an_admin(instance: Instance) -> None:
    server = f"http://127.0.0.1:{instance.serve_port}"
    anonymous = httpx.get(server + "/healthz", timeout=30)
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    assert httpx.get(server + "/healthz", headers={"Authorization": "Bearer td-made-up"}).status_code == 401
    admin = httpx.get(server + "/healthz", headers=instance.auth, timeout=30).json()
    assert admin["status"] == "ok" and "loaded" in admin and "stats" in admin
