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

    def zip_folder(self, key: str) -> bytes:
        """The weights, configs and docs directly inside folder ``key`` as a zip archive.

        Only safe formats travel: pickles a trainer leaves beside them (training_args.bin) don't.
        """
        folder = self.path(key)
        if not folder.is_dir():
            raise FileNotFoundError(key)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for item in sorted(folder.iterdir()):
                if item.is_file() and not item.is_symlink() and item.suffix in DOWNLOADABLE_SUFFIXES:
                    archive.write(item, arcname=item.name)
        return buffer.getvalue()


def get_store() -> LocalArtifactStore:
    """The configured artifact store."""
    return LocalArtifactStore(get_settings().artifacts_dir)
