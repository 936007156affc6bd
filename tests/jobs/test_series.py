"""Chart series: long series are min/max-downsampled in the database (spikes and dips survive),
short ones come whole, and the returned last id lets a live view stream only newer points."""

import math

from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.core.db import session_scope
from app.core.tables import Metric
from tests.jobs.test_api import create, make_file


def test_long_series_keep_their_extremes_and_short_ones_come_whole(
    client: TestClient, tiny_model: str
) -> None:
    job_id = create(client, model=tiny_model, training_file=make_file(client)).json()["id"]
    n = 20_000
    loss = [3.0 * math.exp(-step / 4000) + 0.5 for step in range(1, n + 1)]
    loss[12_345 - 1] = 9.5  # a spike
    loss[17_000 - 1] = 0.01  # a dip
    rows = [
        {"job_id": job_id, "key": "train_loss", "step": s, "epoch": s / 1000, "value": v}
        for s, v in enumerate(loss, start=1)
    ]
    rows += [
        {"job_id": job_id, "key": "valid_loss", "step": s, "epoch": s / 1000, "value": 1.0}
        for s in range(1000, n + 1, 1000)
    ]
    with session_scope() as session:
        session.exec(insert(Metric), params=rows)  # type: ignore[call-overload]

    body = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/series", params={"max_points": 500}).json()
    train, valid = body["series"]["train_loss"], body["series"]["valid_loss"]
    assert train["downsampled"] and train["total"] == n
    assert 400 <= len(train["steps"]) <= 500
    assert train["steps"] == sorted(train["steps"]) and len(set(train["steps"])) == len(train["steps"])
    width = n / 250  # 500 points = 250 buckets of min and max: a value's step is off by < one bucket
    spike = train["steps"][train["values"].index(max(train["values"]))]
    dip = train["steps"][train["values"].index(min(train["values"]))]
    assert max(train["values"]) == 9.5 and abs(spike - 12_345) < width
    assert min(train["values"]) == 0.01 and abs(dip - 17_000) < width
    rises = sum(1 for a, b in zip(train["values"], train["values"][1:], strict=False) if b > a)
    assert rises <= 3  # a falling curve stays falling: no min/max sawtooth (only around spike and dip)
    assert train["steps"][0] == 1 and train["values"][0] == loss[0]
    assert not valid["downsampled"] and valid["steps"] == list(range(1000, n + 1, 1000))
    assert valid["epochs"][0] == 1.0

    everything = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/metrics", params={"limit": 100_000}).json()
    assert body["last_id"] == everything["last_id"]
    only = client.get(f"/api/v1/fine_tuning/jobs/{job_id}/series", params={"keys": "valid_loss"}).json()
    assert list(only["series"]) == ["valid_loss"]
    assert (
        client.get(f"/api/v1/fine_tuning/jobs/{job_id}/series", params={"max_points": 1}).status_code == 422
    )
    assert client.get("/api/v1/fine_tuning/jobs/ftjob-nope/series").status_code == 404
