"""A real S3-compatible server for the storage tests: moto's server mode, started once per
session as its own process on a free port, and a fresh bucket (and store) per test."""

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.storage import S3ArtifactStore, S3Location
from tests.e2e.support import free_port, stop, wait_for

# moto accepts any credentials; these never leave the test machine.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "tunedeck-test", "AWS_SECRET_ACCESS_KEY": "tunedeck-test-secret"}
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    @cached_property
    def client(self) -> Any:
        """One boto3 client for the session (explicit credentials: the environment is untouched)."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self) -> str:
        name = f"tunedeck-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _up(url) or proc.poll() is not None, timeout=60, message="moto's S3 server")
        if proc.poll() is not None:
            pytest.fail(f"moto's S3 server exited: {log_path.read_text()[-2000:]}")
        yield S3Server(url)
    finally:
        stop(proc)


def _up(url: str) -> bool:
    try:
        httpx.get(url + "/moto-api/", timeout=1)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def s3_store(s3_server: S3Server, bucket: str, tmp_path: Path) -> S3ArtifactStore:
    location = S3Location(bucket=bucket, prefix="team/", endpoint_url=s3_server.endpoint_url, region=REGION)
    return S3ArtifactStore(location, tmp_path / "cache", client=s3_server.client)


def bucket_keys(server: S3Server, bucket: str) -> list[str]:
    """Every object name in ``bucket``, read straight from the server (not through the store)."""
    pages = server.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
