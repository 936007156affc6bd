"""The model server as its own process, called with the official `openai` client: models listed
under stable names, chat with and without streaming, adapters hot-swapped on one base under
concurrent requests without mixing, two streams on one base advancing together, the base
answering exactly as the plain base does, merged models, a client that disconnects stopping its
generation, and /v1 passed through the web app."""

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.e2e.support import wait_for
from tests.served import NEW_TOKENS, QUESTION, Served, ask, openai_client

pytestmark = pytest.mark.slow


def test_openai_client_lists_models_and_chats_with_and_without_streaming(
    served: Served, references: dict[str, str]
) -> None:
    client = openai_client(served.url, served.key)
    names = {m.id for m in client.models.list().data}
    assert {"tiny-llama", *served.adapters, served.checkpoint, served.merged} <= names

    reply = client.chat.completions.create(
        model=served.adapters[0], messages=QUESTION, temperature=0, max_tokens=NEW_TOKENS
    )
    assert reply.object == "chat.completion" and reply.model == served.adapters[0]
    assert reply.usage is not None and reply.usage.completion_tokens == NEW_TOKENS
    assert reply.choices[0].message.content == references[served.adapters[0]]
    assert references[served.adapters[0]] != references["tiny-llama"]  # training changed the answer

    pieces = []
    stream = client.chat.completions.create(
        model=served.adapters[0], messages=QUESTION, temperature=0, max_tokens=NEW_TOKENS, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) > 1 and "".join(pieces) == references[served.adapters[0]]

    # The base alone, after an adapter was active: exactly what the plain base model says.
    assert ask(client, "tiny-llama") == references["tiny-llama"]
    assert ask(client, served.merged) == references[served.merged]
    assert ask(client, served.checkpoint) == references[served.checkpoint]

    from openai import NotFoundError

    with pytest.raises(NotFoundError) as missing:
        ask(client, "tiny-llama:ftjob-nope")
    assert "does not exist" in str(missing.value)
    bad = httpx.post(
        served.url + "/v1/chat/completions", json={"model": "tiny-llama", "messages": []}, headers=served.auth
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"


def test_concurrent_requests_across_adapters_never_mix(served: Served, references: dict[str, str]) -> None:
    client = openai_client(served.url, served.key)
    names = ["tiny-llama", *served.adapters, served.checkpoint] * 3  # 3 adapters over an LRU of 2
    answers: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(i: int, name: str) -> None:
        try:
            answers[i] = ask(client, name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, n)) for i, n in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    for i, name in enumerate(names):
        assert answers[i] == references[name], (name, answers[i], references[name])
    loaded = httpx.get(served.url + "/healthz", headers=served.auth).json()["loaded"]["tiny-llama"]
    assert len(loaded) == 2  # the LRU kept two adapters loaded


def test_two_streams_on_one_base_advance_together_and_stay_apart(
    served: Served, references: dict[str, str]
) -> None:
    """Side by side (the playground's panes): the base alone and an adapter on it, streamed at the
    same time, take turns a token at a time instead of one reply after the other."""
    client = openai_client(served.url, served.key)
    names = ["tiny-llama", served.adapters[0]]
    start = threading.Barrier(len(names))
    arrivals: dict[str, list[float]] = {name: [] for name in names}
    texts: dict[str, str] = {}

    def stream(name: str) -> None:
        start.wait()
        chunks = client.chat.completions.create(
            model=name, messages=QUESTION, temperature=0, max_tokens=80, stream=True
        )
        pieces = []
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals[name].append(time.monotonic())
                pieces.append(chunk.choices[0].delta.content)
        texts[name] = "".join(pieces)

    threads = [threading.Thread(target=stream, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for name in names:  # greedy: the first NEW_TOKENS tokens are the model's own answer
        assert texts[name].startswith(references[name]), (name, texts[name], references[name])
    base, adapter = (arrivals[name] for name in names)
    assert len(base) > 10 and len(adapter) > 10
    assert base[0] < adapter[-1] and adapter[0] < base[-1], "one reply waited for the other to finish"


def test_a_client_that_disconnects_stops_its_generation(served: Served) -> None:
    before = httpx.get(served.url + "/healthz", headers=served.auth).json()["stats"]
    body = {"model": served.adapters[1], "messages": QUESTION, "max_tokens": 400, "stream": True}
    with httpx.stream(
        "POST", served.url + "/v1/chat/completions", json=body, timeout=60, headers=served.auth
    ) as response:
        for i, _ in enumerate(response.iter_lines()):
            if i >= 6:
                break  # leave after a few tokens
    stats = wait_for(
        lambda: (
            (s := httpx.get(served.url + "/healthz", headers=served.auth).json()["stats"])["cancelled"]
            > before["cancelled"]
            and s
        ),
        timeout=30,
        message="the generation to stop",
    )
    assert stats["completion_tokens"] - before["completion_tokens"] < 400


def test_the_web_app_passes_v1_through(
    served: Served, references: dict[str, str], client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.config import get_settings

    monkeypatch.setenv("TUNEDECK_MODEL_SERVER_URL", served.url)
    # This web app has a database of its own, so it calls the server as any client would: with a
    # key (the playground tests cover the shared-database case, where the internal token is used).
    monkeypatch.setenv("TUNEDECK_MODEL_SERVER_API_KEY", served.key)
    get_settings.cache_clear()
    models = client.get("/v1/models")
    assert models.status_code == 200 and "tiny-llama" in {m["id"] for m in models.json()["data"]}
    body = {
        "model": served.adapters[0],
        "messages": QUESTION,
        "temperature": 0,
        "max_tokens": NEW_TOKENS,
        "stream": True,
    }
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    monkeypatch.setenv("TUNEDECK_MODEL_SERVER_URL", "http://127.0.0.1:9")  # nothing listens there
    get_settings.cache_clear()
    down = client.get("/v1/models")
    assert down.status_code == 503 and "tunedeck serve" in down.json()["error"]["message"]
    assert time.monotonic() > 0
