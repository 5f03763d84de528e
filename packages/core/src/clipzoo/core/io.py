"""Small I/O helpers shared by writers: atomic local writes, and one storage interface for local folders and
fsspec URLs (``s3://``, ``gs://``, ``memory://``, ``file://`` ...).

A shard folder is committed by writing its manifest last, so the storage interface needs only: write a whole
object (atomically where the backend allows), upload a finished local file, list, read, delete, and an
exclusive create for the ingest lock. Local folders use ``os.replace`` after ``fsync``; object stores write
whole objects (a PUT is atomic there), so a reader never sees half an object either way.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def is_url(target: str | Path) -> bool:
    """True for ``scheme://...`` strings (fsspec URLs); local paths and ``file://`` URLs count as local."""
    text = str(target)
    return "://" in text and not text.startswith("file://")


class Storage:
    """A folder to write a shard set into: a local directory or an fsspec URL (see the module docstring)."""

    local: bool = True

    def __init__(self, target: str | Path):
        text = str(target)
        self.url = text
        if text.startswith("file://"):
            text = text[len("file://"):]
        if is_url(text):
            import fsspec

            self.local = False
            self.fs, self.root = fsspec.core.url_to_fs(text)
            self.root = self.root.rstrip("/")
        else:
            self.fs = None
            self.root = str(Path(text))

    def __str__(self) -> str:
        return self.url

    def url_of(self, name: str) -> str:
        """``name`` inside the folder, as the user wrote the folder (for messages)."""
        return f"{self.url.rstrip('/')}/{name}"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if not self.local else str(Path(self.root) / name)

    # -- queries ----------------------------------------------------------------------------------
    def exists(self, name: str = "") -> bool:
        target = self.path(name) if name else self.root
        return os.path.exists(target) if self.local else self.fs.exists(target)

    def list(self, sub: str = "") -> list[str]:
        """Names (not paths) directly inside the folder or its subfolder ``sub``; empty when it does not exist."""
        folder = self.path(sub) if sub else self.root
        if self.local:
            return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        try:
            entries = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.rstrip("/") != folder)

    def size(self, name: str) -> int:
        return os.path.getsize(self.path(name)) if self.local else int(self.fs.size(self.path(name)))

    def read_text(self, name: str) -> str:
        if self.local:
            return Path(self.path(name)).read_text(encoding="utf-8")
        with self.fs.open(self.path(name), "rb") as fh:
            return fh.read().decode("utf-8")

    def open(self, name: str):
        """``name`` opened for reading, as a binary file object."""
        return open(self.path(name), "rb") if self.local else self.fs.open(self.path(name), "rb")

    # -- changes ----------------------------------------------------------------------------------
    def makedirs(self, sub: str = "") -> None:
        folder = self.path(sub) if sub else self.root
        if self.local:
            os.makedirs(folder, exist_ok=True)
        else:
            self.fs.makedirs(folder, exist_ok=True)

    def write_text(self, name: str, text: str) -> None:
        """Write a whole object: temp file + ``os.replace`` locally, one PUT on object storage."""
        if self.local:
            atomic_write_text(self.path(name), text)
        else:
            with self.fs.open(self.path(name), "wb") as fh:
                fh.write(text.encode("utf-8"))

    def create_exclusive(self, name: str, text: str) -> bool | None:
        """Create ``name`` only if absent: True when created, False when it exists, None when the backend cannot
        say atomically (then the caller checks existence itself and warns)."""
        if self.local:
            try:
                fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            return True
        try:
            with self.fs.open(self.path(name), "xb") as fh:
                fh.write(text.encode("utf-8"))
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError, TypeError):  # the backend has no exclusive-create mode
            return None

    def put(self, local_file: str | Path, name: str) -> None:
        """Move a finished local file into the folder under ``name`` (rename locally, upload remotely)."""
        if self.local:
            os.replace(local_file, self.path(name))
        else:
            self.fs.put_file(str(local_file), self.path(name))
            os.unlink(local_file)

    def remove(self, name: str) -> None:
        target = self.path(name)
        if self.local:
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.unlink(target)
        elif self.fs.exists(target):
            self.fs.rm(target, recursive=True)


def input_cache_dir() -> Path:
    """Where URL inputs are copied before a source reads them: ``$CLIPZOO_INPUT_CACHE``, else
    ``$XDG_CACHE_HOME/clipzoo/inputs`` (``~/.cache/clipzoo/inputs``)."""
    env = os.environ.get("CLIPZOO_INPUT_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clipzoo" / "inputs"


def stage_input(url: str) -> Path:
    """A local copy of the file or folder at fsspec ``url``, for sources that read local paths only.

    The copy lives at ``cache/<scheme>/<host>/<path>``, so the same URL always maps to the same local path (the
    file and folder names a source puts into keys and metadata stay those of the URL, and runs stay
    reproducible); a file already there with the remote size is not fetched again.
    """
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    scheme = url.split("://", 1)[0]
    local = input_cache_dir() / scheme / path.lstrip("/")
    if fs.isdir(path):
        for remote in fs.find(path):
            _fetch(fs, remote, local / os.path.relpath(remote, path))
    else:
        _fetch(fs, path, local)
    return local


def _fetch(fs, remote: str, local: Path) -> None:
    size = fs.size(remote)
    if local.is_file() and local.stat().st_size == size:
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(local.name + f".tmp{os.getpid()}")
    fs.get_file(remote, str(tmp))
    os.replace(tmp, local)
