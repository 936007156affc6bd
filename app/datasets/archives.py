"""Dataset uploads packed as .zip or .tar.gz: one data file, read in memory, never extracted.

An archive is refused (DatasetInvalid, nothing stored) when a member's name climbs out
(``../``) or is absolute, when it holds links or devices, nested archives, anything besides its
one data file, or when it inflates past the upload limit or more than MAX_RATIO times its own
size. Sizes are counted while decompressing; the sizes an archive's headers claim are not trusted.
"""

import gzip
import io
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import IO, Any

from app.datasets.parsing import DatasetInvalid, Problem
from app.http.limits import describe_limit

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
DATA_SUFFIXES = (".json", ".jsonl", ".csv")
NESTED_SUFFIXES = (*ARCHIVE_SUFFIXES, ".tar", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tbz2", ".txz")
MACOS_EXTRAS = ("__MACOSX/", ".DS_Store")  # what macOS adds to the zips it makes; skipped
MAX_RATIO = 100
RATIO_FLOOR = 1 << 20  # below this much output no ratio is suspicious
TAR_OVERHEAD = 1 << 20  # headers and padding a tar stream may add around its data file
CHUNK = 64 * 1024


def is_archive(filename: str) -> bool:
    return filename.lower().endswith(ARCHIVE_SUFFIXES)


def unpack(data: bytes, filename: str, *, limit: int) -> tuple[bytes, str]:
    """The one data file in the archive ``data`` and its name; DatasetInvalid if the archive is unsafe."""
    try:
        if filename.lower().endswith(".zip"):
            return _from_zip(data, limit)
        return _from_tar(data, limit)
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        zlib.error,
        EOFError,
        OSError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise _invalid(f"{filename} is not a readable archive ({exc}); upload the data file itself") from None


def _invalid(message: str) -> DatasetInvalid:
    return DatasetInvalid([Problem(0, message)])


def _check_name(name: str) -> str:
    """Refuse names that would leave an extraction folder; return the name."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")):
        raise _invalid(f"the archive member {name!r} has an absolute path; pack relative names only")
    if ".." in parts:
        raise _invalid(f"the archive member {name!r} climbs out of the archive ('..'); pack plain names")
    return name


def _ignored(name: str) -> bool:
    folder, file = MACOS_EXTRAS
    return name.startswith(folder) or PurePosixPath(name).name == file


def _is_data(name: str) -> bool:
    return not _ignored(name) and name.lower().endswith(DATA_SUFFIXES)


def _pick(names: list[str]) -> str:
    """The one data file among the archive's (already vetted) regular files."""
    names = [n for n in names if not _ignored(n)]
    nested = [n for n in names if n.lower().endswith(NESTED_SUFFIXES)]
    if nested:
        raise _invalid(f"the archive holds another archive ({nested[0]}); pack the data file itself")
    data = [n for n in names if _is_data(n)]
    others = [n for n in names if n not in data]
    if others:
        raise _invalid(f"the archive holds {others[0]}, which is not a .json, .jsonl or .csv data file")
    if len(data) != 1:
        found = f"{len(data)} ({', '.join(data[:5])})" if data else "none"
        raise _invalid(f"the archive must hold exactly one data file (.json, .jsonl or .csv); found {found}")
    return data[0]


def _read_capped(stream: IO[bytes], *, limit: int, packed: int) -> bytes:
    """Read ``stream`` to the end, refusing more than ``limit`` bytes or a bomb's ratio."""
    chunks, size = [], 0
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        _check_size(size, limit=limit, packed=packed)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_size(size: int, *, limit: int, packed: int) -> None:
    if size > limit:
        raise _invalid(f"the archive unpacks to more than the {describe_limit(limit)} upload limit")
    if size > RATIO_FLOOR and size > MAX_RATIO * packed:
        raise _invalid(
            f"the archive unpacks to over {MAX_RATIO} times its size (a zip bomb?); "
            "upload the data file itself"
        )


def _from_zip(data: bytes, limit: int) -> tuple[bytes, str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = []
        for info in archive.infolist():
            _check_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _invalid(
                    f"the archive member {info.filename!r} is a symbolic link; pack real files only"
                )
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: made without unix modes
                raise _invalid(f"the archive member {info.filename!r} is not a regular file")
            if not info.is_dir():
                files.append(info.filename)
        name = _pick(files)
        with archive.open(name) as member:
            return _read_capped(member, limit=limit, packed=len(data)), name


class _Counted(io.RawIOBase):
    """The decompressed tar stream, refused as soon as it grows past ``limit`` (the data file's
    own reader checks the ratio; this bounds what headers and other members may add)."""

    def __init__(self, inner: io.BufferedIOBase, *, limit: int) -> None:
        self.inner, self.limit, self.size = inner, limit, 0
        self.cap = limit + TAR_OVERHEAD

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        chunk = self.inner.read(min(len(view), CHUNK))
        view[: len(chunk)] = chunk
        self.size += len(chunk)
        if self.size > self.cap:
            raise _invalid(f"the archive unpacks to more than the {describe_limit(self.limit)} upload limit")
        return len(chunk)


def _from_tar(data: bytes, limit: int) -> tuple[bytes, str]:
    counted = _Counted(gzip.GzipFile(fileobj=io.BytesIO(data)), limit=limit)
    found: list[tuple[str, bytes]] = []
    files: list[str] = []
    with tarfile.open(fileobj=io.BufferedReader(counted, CHUNK), mode="r|") as archive:
        for member in _members(archive):
            files.append(member.name)
            if _is_data(member.name) and not found:
                stream = archive.extractfile(member)
                assert stream is not None  # a regular file always has a stream
                found.append((member.name, _read_capped(stream, limit=limit, packed=len(data))))
    name = _pick(files)
    payload = next(body for member, body in found if member == name)
    return payload, name


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Regular files, in order, after refusing links, devices and names that climb out."""
    for member in archive:
        _check_name(member.name)
        if member.issym() or member.islnk():
            raise _invalid(f"the archive member {member.name!r} is a link; pack real files only")
        if member.isdir():
            continue
        if not member.isfile():
            raise _invalid(f"the archive member {member.name!r} is a device or other special file")
        yield member
