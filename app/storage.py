"""The artifact store: uploaded datasets, checkpoints and adapters, addressed by key.

Keys are relative paths such as ``files/file-…/train.jsonl``. This is the local-directory
backend; workers and the web app reach artifacts only through it.
"""

import io
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from app.config import get_settings

DOWNLOADABLE_SUFFIXES = frozenset({".safetensors", ".json", ".jinja", ".md", ".txt", ".model"})


class ArtifactKeyError(ValueError):
    """A key that would leave the store (``..``, absolute paths)."""


class LocalArtifactStore:
    """Artifacts in a local folder; writes are atomic (temporary name, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file system path of ``key``, refusing any key that escapes the root."""
        pure = PurePosixPath(key)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in key:
            raise ArtifactKeyError(f"invalid artifact key: {key!r}")
        path = (self.root / pure).resolve()
        if not path.is_relative_to(self.root):
            raise ArtifactKeyError(f"invalid artifact key: {key!r}")
        return path

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
        sink = _ChunkSink()
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
            for item in files:
                if item.suffix not in DOWNLOADABLE_SUFFIXES:
                    continue
                with open(item, "rb") as source, archive.open(item.name, "w", force_zip64=True) as target:
                    while chunk := source.read(chunk_size):
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


def get_store() -> LocalArtifactStore:
    """The configured artifact store."""
    return LocalArtifactStore(get_settings().artifacts_dir)
