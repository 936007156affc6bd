"""Helpers for the operator tests: scrape /metrics the way Prometheus does and read samples."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

LOOPBACK = ("127.0.0.1", 50000)


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(exposition: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series is absent (a counter not yet incremented)."""
    return samples(exposition).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def local(configured: Path) -> Iterator[TestClient]:
    """The app seen from loopback, with no credentials (Prometheus on the same host)."""
    from app.main import create_app

    with TestClient(create_app(), client=LOOPBACK) as test_client:
        yield test_client
