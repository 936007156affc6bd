"""The artifact store: uploaded datasets, checkpoints, adapters and merged models, addressed by key.

Keys are relative paths such as ``files/file-…/train.jsonl`` or ``jobs/ftjob-…/adapter``. Two
backends share one interface (:class:`ArtifactStore`): a local directory (the default) and an
S3-compatible bucket, so that workers and model servers on other hosts can share artifacts. Code
outside this module never builds an artifact's path itself: it goes through the store, and asks
for ``local_path(key)`` when a library (transformers, peft) needs a folder on disk.
"""

import errno
import io
import json
import logging
import os
import shutil
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from app.core.config import Settings, get_settings

DOWNLOADABLE_SUFFIXES = frozenset({".safetensors", ".json", ".jinja", ".md", ".txt", ".model"})

log = logging.getLogger(__name__)


class ArtifactKeyError(ValueError):
    """A key that would leave the store (``..``, absolute paths)."""


class ArtifactStore(Protocol):
    """What every backend offers. Folders are written whole and atomically: a reader sees the old
    folder, the new one, or none, never a half-written one."""

    def exists(self, key: str) -> bool:
        """Whether a file or a complete folder is stored under ``key``."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a whole file atomically."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """A whole file; FileNotFoundError if absent."""
        ...

    def new_folder(self, key: str) -> AbstractContextManager[Path]:
        """Yield an empty local folder; if the block succeeds, it replaces the folder ``key``."""
        ...

    def publish_folder(self, source: Path, key: str) -> None:
        """Move a finished local folder (from ``staging_dir``) in as the new folder ``key``."""
        ...

    def local_path(self, key: str) -> Path:
        """A local file or folder with ``key``'s content, to read only; FileNotFoundError if absent."""
        ...

    def staging_dir(self, key: str) -> Path:
        """A local scratch folder that belongs to ``key`` (``delete(key)`` removes it too)."""
        ...

    @property
    def local_root(self) -> Path:
        """The local folder this store writes into (for disk space messages)."""
        ...

    def location(self, key: str) -> str:
        """Where ``key`` lies, for listings and messages; fetches nothing."""
        ...

    def delete(self, key: str) -> None:
        """Remove a file or a folder and everything under it (no error if absent)."""
        ...

    def iter_zip(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the safe files directly inside folder ``key`` as a zip archive."""
        ...


def check_key(key: str) -> PurePosixPath:
    """``key`` as a relative path, refusing any that could escape the store."""
    pure = PurePosixPath(key)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in key:
        raise ArtifactKeyError(f"invalid artifact key: {key!r}")
    return pure


class LocalArtifactStore:
    """Artifacts in a local folder; writes are atomic (temporary name, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file system path of ``key``, refusing any key that escapes the root."""
        pure = check_key(key)
        path = (self.root / pure).resolve()
        if not path.is_relative_to(self.root):
            raise ArtifactKeyError(f"invalid artifact key: {key!r}")
        return path

    @property
    def local_root(self) -> Path:
        return self.root

    def location(self, key: str) -> str:
        return str(self.path(key))

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write a whole file atomically."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    @contextmanager
    def new_folder(self, key: str) -> Iterator[Path]:
        """Yield a temporary folder; on success it replaces the folder ``key`` in one rename."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.mkdir()
        try:
            yield tmp
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def publish_folder(self, source: Path, key: str) -> None:
        """One rename: ``source`` (a staging folder in this store) becomes ``key``."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    def local_path(self, key: str) -> Path:
        """The artifact itself: nothing to copy on this backend."""
        path = self.path(key)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such artifact", str(path))
        return path

    def staging_dir(self, key: str) -> Path:
        """Staging lives beside the artifacts, so that publishing is a rename."""
        return self.path(key)

    def delete(self, key: str) -> None:
        """Remove a file or a folder (no error if absent)."""
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def iter_zip(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the weights, configs and docs directly inside folder ``key`` as a zip archive.

        Memory stays flat for multi-GB merged models. Only safe formats travel: pickles a trainer
        leaves beside them (training_args.bin) don't.
        """
        folder = self.path(key)
        if not folder.is_dir():
            raise FileNotFoundError(key)
        files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()]
        entries = [(p.name, _file_chunks(p, chunk_size)) for p in files if p.suffix in DOWNLOADABLE_SUFFIXES]
        yield from _zip_stream(entries)


def _file_chunks(path: Path, chunk_size: int) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as source:
            while chunk := source.read(chunk_size):
                yield chunk

    return chunks


def _zip_stream(entries: Iterable[tuple[str, Callable[[], Iterator[bytes]]]]) -> Iterator[bytes]:
    """A stored (uncompressed) zip of ``(name, chunks)`` entries, handed on as it is written."""
    sink = _ChunkSink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for name, chunks in entries:
            with archive.open(name, "w", force_zip64=True) as target:
                for chunk in chunks():
                    target.write(chunk)
                    yield from sink.drain()
    yield from sink.drain()


class _ChunkSink(io.RawIOBase):
    """A write-only, unseekable stream whose written bytes are handed on as chunks."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> Iterator[bytes]:
        chunks, self._chunks = self._chunks, []
        yield from chunks


# --- S3-compatible backend -------------------------------------------------------------------

MARKER = ".tunedeck-folder.json"
"""The object written last under a folder's prefix: a folder without it does not exist yet."""
VERSION_META = "tunedeck-version"
"""Object metadata naming the folder upload an object belongs to (a reader checks it)."""
_READ_ATTEMPTS = 3


class FolderReplaced(RuntimeError):
    """A folder changed while it was being read (it was replaced or deleted); read it again."""


@dataclass(frozen=True)
class S3Location:
    """Where an S3 store keeps its objects, and how to reach the server."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"


class S3ArtifactStore:
    """Artifacts as objects in an S3-compatible bucket (AWS S3, MinIO, moto), with a local cache.

    A file is one object ``<prefix><key>``. A folder is the objects ``<prefix><key>/<relpath>``
    plus a marker ``<prefix><key>/.tunedeck-folder.json``, written last, that lists the files and
    names the upload's version (also set as metadata on each of its objects). Readers trust only
    folders with a marker, and check every object's version against it, so a half-uploaded or
    half-replaced folder is never taken for a complete one.

    Libraries that need files on disk get a copy through ``local_path``: downloaded once per
    version into ``<cache_dir>/objects/<key>/@<version>`` (atomically, by renaming a finished
    temporary folder), and reused while that version is current.
    """

    def __init__(self, location: S3Location, cache_dir: Path, client: Any | None = None) -> None:
        self.s3 = location
        self.cache_dir = cache_dir.resolve()
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.s3.endpoint_url, self.s3.region)
        return self._client

    @property
    def local_root(self) -> Path:
        return self.cache_dir

    def location(self, key: str) -> str:
        return f"s3://{self.s3.bucket}/{self._name(self._key(key))}"

    # keys and names

    def _key(self, key: str) -> str:
        """The object name of ``key``; components starting with ``@`` name cached versions."""
        pure = check_key(key)
        if any(part.startswith("@") for part in pure.parts):
            raise ArtifactKeyError(f"invalid artifact key: {key!r}")
        return pure.as_posix()

    def _name(self, key: str) -> str:
        return self.s3.prefix + key

    def _tmp(self) -> Path:
        tmp = self.cache_dir / "tmp" / uuid.uuid4().hex
        tmp.mkdir(parents=True)
        return tmp

    # files

    def exists(self, key: str) -> bool:
        key = self._key(key)
        return self._head(self._name(key)) is not None or self._manifest(key) is not None

    def write_bytes(self, key: str, data: bytes) -> None:
        """One PUT: S3 makes an object visible only once it is complete."""
        self.client.put_object(Bucket=self.s3.bucket, Key=self._name(self._key(key)), Body=data)

    def read_bytes(self, key: str) -> bytes:
        key = self._key(key)
        try:
            reply = self.client.get_object(Bucket=self.s3.bucket, Key=self._name(key))
        except Exception as exc:
            if _missing(exc):
                raise FileNotFoundError(errno.ENOENT, "no such artifact", key) from None
            raise
        return bytes(reply["Body"].read())

    # folders

    @contextmanager
    def new_folder(self, key: str) -> Iterator[Path]:
        """Yield a local temporary folder, uploaded as the folder ``key`` if the block succeeds."""
        key = self._key(key)
        tmp = self._tmp()
        try:
            yield tmp
            self.publish_folder(tmp, key)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def publish_folder(self, source: Path, key: str) -> None:
        """Upload ``source`` as the folder ``key``, then keep it as the cached copy."""
        key = self._key(key)
        version = uuid.uuid4().hex
        files = _folder_files(source)
        self._upload_folder(source, key, version, files)
        self._keep(source, key, version)

    def _upload_folder(self, source: Path, key: str, version: str, files: dict[str, int]) -> None:
        """Old marker out, objects up, stale objects out, new marker in: in this order.

        Between the first step and the last the folder reads as absent (as while the local backend
        swaps folders); if an upload fails, the objects it added are removed again.
        """
        bucket, prefix = self.s3.bucket, self._name(key) + "/"
        old = set(self._list(prefix))
        if prefix + MARKER in old:
            self.client.delete_object(Bucket=bucket, Key=prefix + MARKER)
        uploaded: list[str] = []
        try:
            for rel in files:
                name = prefix + rel
                extra = {"Metadata": {VERSION_META: version}}
                self.client.upload_file(str(source / rel), bucket, name, ExtraArgs=extra)
                uploaded.append(name)
        except BaseException:
            self._delete_names([n for n in uploaded if n not in old])
            raise
        self._delete_names(sorted(old - {prefix + rel for rel in files} - {prefix + MARKER}))
        manifest = {"format": 1, "version": version, "files": files}
        self.client.put_object(
            Bucket=bucket,
            Key=prefix + MARKER,
            Body=json.dumps(manifest).encode(),
            ContentType="application/json",
        )

    def _keep(self, source: Path, key: str, version: str) -> None:
        """The uploaded folder becomes the cached copy: what this process wrote, it need not fetch."""
        target = self.cache_dir / "objects" / key / f"@{version}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, target)
        except OSError:
            log.debug("could not keep %s as the cached copy of %s", source, key, exc_info=True)
            return
        _prune_versions(target)

    def _manifest(self, key: str) -> dict[str, Any] | None:
        """The marker of folder ``key``, or None when there is no complete folder."""
        try:
            reply = self.client.get_object(Bucket=self.s3.bucket, Key=f"{self._name(key)}/{MARKER}")
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        manifest: dict[str, Any] = json.loads(reply["Body"].read())
        for rel in manifest["files"]:
            check_key(rel)  # the marker decides local paths: refuse one that escapes
        return manifest

    # local copies

    def local_path(self, key: str) -> Path:
        """A cached local copy of the folder or file ``key`` (downloaded when not current)."""
        key = self._key(key)
        for _ in range(_READ_ATTEMPTS):
            manifest = self._manifest(key)
            try:
                if manifest is None:
                    return self._local_file(key)
                return self._local_folder(key, manifest)
            except FolderReplaced:
                log.info("artifact %s changed while it was downloaded; reading it again", key)
        raise FolderReplaced(key)

    def _local_folder(self, key: str, manifest: dict[str, Any]) -> Path:
        target = self.cache_dir / "objects" / key / f"@{manifest['version']}"
        if target.is_dir():
            return target
        tmp = self._tmp()
        try:
            for rel, size in manifest["files"].items():
                self._download(f"{self._name(key)}/{rel}", tmp / rel, manifest["version"], size)
            return _settle(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _local_file(self, key: str) -> Path:
        head = self._head(self._name(key))
        if head is None:
            raise FileNotFoundError(errno.ENOENT, "no such artifact", key)
        etag = "".join(c for c in str(head["ETag"]) if c.isalnum())
        target = self.cache_dir / "objects" / key / f"@{etag}"
        if not target.is_dir():
            tmp = self._tmp()
            try:
                self._download(self._name(key), tmp / PurePosixPath(key).name, None, None, etag=head["ETag"])
                _settle(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target / PurePosixPath(key).name

    def _download(
        self, name: str, dest: Path, version: str | None, size: int | None, etag: str | None = None
    ) -> None:
        """Stream one object to ``dest``; FolderReplaced if it is not the one the caller expects."""
        try:
            reply = self.client.get_object(Bucket=self.s3.bucket, Key=name)
        except Exception as exc:
            if _missing(exc):
                raise FolderReplaced(name) from None
            raise
        if version is not None and reply.get("Metadata", {}).get(VERSION_META) != version:
            reply["Body"].close()
            raise FolderReplaced(name)
        if etag is not None and reply.get("ETag") != etag:
            reply["Body"].close()
            raise FolderReplaced(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as handle:
            for chunk in reply["Body"].iter_chunks(1 << 20):
                handle.write(chunk)
        if size is not None and dest.stat().st_size != size:
            raise FolderReplaced(name)

    def staging_dir(self, key: str) -> Path:
        """Scratch space in the cache folder: ``publish_folder`` uploads from it, then renames."""
        return self.cache_dir / "staging" / self._key(key)

    # deleting and listing

    def delete(self, key: str) -> None:
        """The file ``key`` or everything under the folder ``key``: markers first, so that no
        reader takes a folder being deleted for a complete one. Local copies go too."""
        key = self._key(key)
        names = self._list(self._name(key) + "/")
        markers = {n for n in names if n.endswith("/" + MARKER)}
        self._delete_names(sorted(markers))
        self._delete_names([n for n in names if n not in markers] + [self._name(key)])
        for local in (self.cache_dir / "objects" / key, self.cache_dir / "staging" / key):
            shutil.rmtree(local, ignore_errors=True)

    def _list(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.s3.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def _delete_names(self, names: list[str]) -> None:
        for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": n} for n in names[start : start + 1000]]
            self.client.delete_objects(Bucket=self.s3.bucket, Delete={"Objects": batch, "Quiet": True})

    def _head(self, name: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.s3.bucket, Key=name)
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        return head

    def iter_zip(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the folder's safe top-level files from the bucket as a zip (nothing on disk)."""
        key = self._key(key)
        manifest = self._manifest(key)
        if manifest is None:
            raise FileNotFoundError(key)
        names = sorted(
            rel
            for rel in manifest["files"]
            if "/" not in rel and PurePosixPath(rel).suffix in DOWNLOADABLE_SUFFIXES
        )
        entries = [
            (rel, self._object_chunks(f"{self._name(key)}/{rel}", manifest, chunk_size)) for rel in names
        ]
        yield from _zip_stream(entries)

    def _object_chunks(
        self, name: str, manifest: dict[str, Any], chunk_size: int
    ) -> Callable[[], Iterator[bytes]]:
        def chunks() -> Iterator[bytes]:
            reply = self.client.get_object(Bucket=self.s3.bucket, Key=name)
            if reply.get("Metadata", {}).get(VERSION_META) != manifest["version"]:
                raise FolderReplaced(name)
            yield from reply["Body"].iter_chunks(chunk_size)

        return chunks


def _folder_files(folder: Path) -> dict[str, int]:
    """Relative path → size of every regular file under ``folder`` (symlinks are not followed)."""
    files: dict[str, int] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(folder).as_posix()
            if rel != MARKER:
                files[rel] = path.stat().st_size
    return files


def _settle(tmp: Path, target: Path) -> Path:
    """Rename a finished download into place; another process may have got there first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
    _prune_versions(target)
    return target


def _prune_versions(current: Path) -> None:
    """Drop cached copies of a key's older versions (best effort)."""
    for sibling in current.parent.glob("@*"):
        if sibling != current:
            shutil.rmtree(sibling, ignore_errors=True)


def _missing(exc: Exception) -> bool:
    """Whether a botocore error says the object (or bucket key) is not there."""
    response = getattr(exc, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


_clients_lock = threading.Lock()


@lru_cache(maxsize=8)
def _cached_client(endpoint_url: str | None, region: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    # Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a
    # profile, an instance role); tunedeck never reads or logs them.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def s3_client(endpoint_url: str | None, region: str) -> Any:
    """One boto3 client per endpoint and region (clients are thread-safe; making one is slow)."""
    with _clients_lock:
        return _cached_client(endpoint_url, region)


def s3_location(settings: Settings) -> S3Location:
    """The bucket and prefix from the settings; the prefix always ends with ``/`` when set."""
    if not settings.s3_bucket:
        raise ValueError("TUNEDECK_STORAGE=s3 needs TUNEDECK_S3_BUCKET")
    prefix = settings.s3_prefix.strip("/")
    if prefix:
        check_key(prefix)
    return S3Location(
        bucket=settings.s3_bucket,
        prefix=f"{prefix}/" if prefix else "",
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region,
    )


def get_store() -> ArtifactStore:
    """The configured artifact store (TUNEDECK_STORAGE: ``local``, the default, or ``s3``)."""
    settings = get_settings()
    if settings.storage == "s3":
        location = s3_location(settings)
        cache = settings.data_dir / "cache" / "s3" / location.bucket / location.prefix
        return S3ArtifactStore(location, cache)
    return LocalArtifactStore(settings.artifacts_dir)
