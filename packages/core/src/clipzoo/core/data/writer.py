"""Webdataset shard writer: size/count-limited tar shards, atomic, with a manifest.

A sample is a webdataset-style dict: ``{"__key__": "pmc123_fig1", "image.png": PIL.Image,
"txt": "caption", "json": {...metadata...}}``. The part of each field name after the last dot is the
encoding (``png``/``jpg`` image, ``npy`` array, ``txt`` text, ``json`` anything JSON-serialisable,
``cls`` integer); webdataset's own encoder does the work. Every sample must carry a ``json`` member.

Each shard is written as ``NAME.tar.partial`` and renamed to ``NAME.tar`` only once it is complete
and fsynced, so a crashed writer never leaves a tar that looks whole. ``manifest.json`` is written the
same way (temp file, then ``os.replace``) when the writer closes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_KEY_OK = re.compile(r"[^A-Za-z0-9_\-]")


def safe_key(*parts: object) -> str:
    """A webdataset key from arbitrary parts: dots would split key from extension, so none survive."""
    return "_".join(_KEY_OK.sub("-", str(p)) for p in parts if str(p))


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class ShardInfo:
    name: str
    samples: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    """What a shard folder holds and how it was made. Read by the loader, `shards inspect` and cards."""

    shards: list[ShardInfo] = field(default_factory=list)
    created: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    ingest: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    def to_json(self) -> str:
        data = asdict(self)
        data["num_samples"] = self.num_samples
        return json.dumps(data, indent=2, sort_keys=False, default=str)

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        path = Path(folder) / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no manifest.json; is {folder} a shard folder written by clipzoo?")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """A manifest from its parsed JSON, wherever it was read from (a folder, an object store, HTTP)."""
        return cls(
            shards=[ShardInfo(**s) for s in data.get("shards", [])],
            created=data.get("created", ""),
            source=data.get("source", {}),
            ingest=data.get("ingest", {}),
        )

    def shard_paths(self, folder: str | Path) -> list[str]:
        return [str(Path(folder) / s.name) for s in self.shards]


class _HashingFile(io.RawIOBase):
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, fh):
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        return self._fh.write(b)

    def flush(self) -> None:
        self._fh.flush()


class ShardWriter:
    """Write samples into ``out_dir/{prefix}-{index:06d}.tar`` shards.

    ``max_count`` and ``max_bytes`` bound each shard (the shard closes once either is reached). Use as
    a context manager; on a clean exit the manifest is written. If the body raises, the current
    partial shard is deleted and no manifest is written: the folder holds only whole shards, and
    without a manifest nobody mistakes it for a finished shard set.
    """

    def __init__(
        self,
        out_dir: str | Path,
        prefix: str = "shard",
        max_count: int = 10_000,
        max_bytes: int = 1 << 30,
        source: dict[str, Any] | None = None,
    ):
        import webdataset as wds  # noqa: F401  (fail early with a clear ImportError)

        if max_count < 1 or max_bytes < 1:
            raise ValueError("max_count and max_bytes must be positive")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.manifest = Manifest(source=dict(source or {}))
        self._index = 0
        self._tar = None
        self._raw = None
        self._hash = None
        self._count = 0
        self._keys: set[str] = set()
        for stale in self.out_dir.glob(f"{prefix}-*.tar.partial"):
            log.warning("removing stale partial shard %s", stale)
            stale.unlink()

    # -- shard lifecycle ------------------------------------------------------------------------
    def _shard_name(self) -> str:
        return f"{self.prefix}-{self._index:06d}.tar"

    def _open(self) -> None:
        import webdataset as wds

        path = self.out_dir / (self._shard_name() + ".partial")
        self._raw = open(path, "wb")
        self._hash = _HashingFile(self._raw)
        self._tar = wds.TarWriter(self._hash, encoder=True)
        self._count = 0

    def _finish(self) -> None:
        if self._tar is None:
            return
        self._tar.close()  # closes the tarfile only; our file handles stay ours
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        name = self._shard_name()
        partial = self.out_dir / (name + ".partial")
        if self._count == 0:
            partial.unlink()
        else:
            os.replace(partial, self.out_dir / name)
            self.manifest.shards.append(ShardInfo(name, self._count, self._hash.size, self._hash.sha.hexdigest()))
            self._index += 1
        self._tar = self._raw = self._hash = None

    def _abort(self) -> None:
        if self._tar is None:
            return
        try:
            self._tar.close()  # the tar ends cleanly before the file goes, so nothing writes to a closed file
            self._raw.close()
        finally:
            (self.out_dir / (self._shard_name() + ".partial")).unlink(missing_ok=True)
            self._tar = self._raw = self._hash = None

    # -- public API -----------------------------------------------------------------------------
    def write(self, sample: dict[str, Any]) -> None:
        key = sample.get("__key__")
        if not key or "." in key:
            raise ValueError(f"sample key {key!r} must be non-empty and contain no dots (use safe_key())")
        if "json" not in sample:
            raise ValueError(f"sample {key!r} has no 'json' metadata member")
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r}")
        self._keys.add(key)
        if self._tar is None:
            self._open()
        self._tar.write(sample)
        self._count += 1
        if self._count >= self.max_count or self._hash.size >= self.max_bytes:
            self._finish()

    @property
    def samples_written(self) -> int:
        return self.manifest.num_samples + (self._count if self._tar is not None else 0)

    def close(self, ingest: dict[str, Any] | None = None) -> Manifest:
        self._finish()
        if ingest is not None:
            self.manifest.ingest = ingest
        self.manifest.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(self.out_dir / MANIFEST_NAME, self.manifest.to_json())
        return self.manifest

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()
