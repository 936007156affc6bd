"""Datasets packed as .zip or .tar.gz: one data file is read in memory; anything that could
escape a folder, point elsewhere, hide more archives or inflate without bound is a 422, and
nothing is stored."""

import io
import json
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.security.conftest import assert_nothing_stored

ROWS = "".join(json.dumps({"instruction": f"Q{i}?", "output": f"A{i}."}) + "\n" for i in range(20)).encode()
CSV = b"instruction,input,output\n" + b"".join(f"Q{i}?,,A{i}.\n".encode() for i in range(20))
# Very repetitive rows: a few KiB of deflate that inflate to megabytes.
BOMB_ROW = json.dumps({"instruction": "a" * 1000, "output": "b" * 1000}) + "\n"


def make_zip(*members: tuple[str, bytes], symlink: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
        if symlink:
            link = zipfile.ZipInfo(symlink)
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(link, "/etc/passwd")
    return out.getvalue()


def make_tar(*members: tuple[str, bytes], special: Callable[[tarfile.TarInfo], None] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if special:
            info = tarfile.TarInfo("special.jsonl")
            special(info)
            archive.addfile(info)
    return out.getvalue()


def upload(client: TestClient, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/files", files={"file": (name, data)}, data={"purpose": "fine-tune"})


def symlink(info: tarfile.TarInfo) -> None:
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"


def hardlink(info: tarfile.TarInfo) -> None:
    info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"


def device(info: tarfile.TarInfo) -> None:
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3  # /dev/null's numbers


def test_an_archive_with_one_data_file_is_read_like_the_file_itself(client: TestClient) -> None:
    for name, data in [
        ("rows.zip", make_zip(("data/rows.jsonl", ROWS), ("__MACOSX/data/._rows.jsonl", b"\0"))),
        ("rows.tar.gz", make_tar(("rows.csv", CSV))),
        (
            "rows.tgz",
            make_tar(("rows.json", json.dumps([json.loads(r) for r in ROWS.splitlines()]).encode())),
        ),
    ]:
        answer = upload(client, name, data)
        assert answer.status_code == 200, (name, answer.text)
        body = answer.json()
        assert (body["rows"], body["format"], body["filename"]) == (20, "instruction", name)
        page = client.get(f"/api/v1/files/{body['id']}/rows", params={"split": "train"}).json()
        assert page["rows"][0]["instruction"].startswith("Q")


UNSAFE = [
    ("up.zip", lambda: make_zip(("../../up.jsonl", ROWS)), "climbs out"),
    ("up.tar.gz", lambda: make_tar(("a/../../up.jsonl", ROWS)), "climbs out"),
    ("abs.zip", lambda: make_zip(("/etc/cron.d/rows.jsonl", ROWS)), "absolute path"),
    ("abs.tar.gz", lambda: make_tar(("/tmp/rows.jsonl", ROWS)), "absolute path"),
    ("link.zip", lambda: make_zip(("rows.jsonl", ROWS), symlink="other.jsonl"), "symbolic link"),
    ("link.tar.gz", lambda: make_tar(("rows.jsonl", ROWS), special=symlink), "is a link"),
    ("hard.tar.gz", lambda: make_tar(("rows.jsonl", ROWS), special=hardlink), "is a link"),
    ("dev.tar.gz", lambda: make_tar(("rows.jsonl", ROWS), special=device), "device"),
    ("two.zip", lambda: make_zip(("a.jsonl", ROWS), ("b.csv", CSV)), "exactly one data file"),
    ("two.tar.gz", lambda: make_tar(("a.jsonl", ROWS), ("b.jsonl", ROWS)), "exactly one data file"),
    ("none.zip", lambda: make_zip(("readme.txt", b"hi")), "not a .json, .jsonl or .csv"),
    ("nested.zip", lambda: make_zip(("inner.zip", make_zip(("rows.jsonl", ROWS)))), "another archive"),
    ("nested.tar.gz", lambda: make_tar(("inner.tar.gz", make_tar(("rows.jsonl", ROWS)))), "another archive"),
    ("broken.zip", lambda: b"PK\x03\x04 not really a zip", "not a readable archive"),
    ("broken.tar.gz", lambda: b"\x1f\x8b\x08\x00 not really gzip", "not a readable archive"),
    ("bomb.zip", lambda: make_zip(("rows.jsonl", BOMB_ROW.encode() * 3000)), "over 100 times its size"),
    ("bomb.tar.gz", lambda: make_tar(("rows.jsonl", BOMB_ROW.encode() * 3000)), "over 100 times its size"),
]


def test_unsafe_archives_are_refused_and_nothing_is_stored(client: TestClient, configured: Path) -> None:
    for name, build, message in UNSAFE:  # one database for all: each refusal must leave it empty
        answer = upload(client, name, build())
        assert answer.status_code == 422, (name, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "invalid_file" and message in error["message"], (name, error["message"])
        assert_nothing_stored(configured)


def test_a_bomb_is_caught_while_inflating_whatever_its_headers_claim(
    client: TestClient, configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.config import get_settings

    monkeypatch.setenv("TUNEDECK_MAX_UPLOAD_BYTES", str(1 << 20))
    get_settings.cache_clear()
    inflating = BOMB_ROW.encode() * 2000  # ~4 MiB from a few KiB: over the 1 MiB limit
    for name, data in [
        ("big.zip", make_zip(("rows.jsonl", inflating))),
        ("big.tgz", make_tar(("rows.jsonl", inflating))),
    ]:
        answer = upload(client, name, data)
        assert (
            answer.status_code == 422
            and "more than the 1 MiB upload limit" in answer.json()["error"]["message"]
        )
    # A zip whose headers say the member is 100 bytes: it is read by what inflates, not by the claim.
    lying = bytearray(make_zip(("rows.jsonl", inflating)))
    real = len(inflating).to_bytes(4, "little")
    for at in (i for i in range(len(lying) - 3) if lying[i : i + 4] == real):
        lying[at : at + 4] = (100).to_bytes(4, "little")
    answer = upload(client, "lying.zip", bytes(lying))
    assert answer.status_code == 422, answer.text
    assert_nothing_stored(configured)
