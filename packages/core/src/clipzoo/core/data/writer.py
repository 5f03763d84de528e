"""Webdataset shard writer: size/count-limited tar shards with deterministic bytes, and the manifest.

A sample is a webdataset-style dict: ``{"__key__": "pmc123_fig1", "image.png": PIL.Image, "txt": "caption",
"json": {...metadata...}}``. Every sample must carry a ``json`` member. Members are written under the names the
community's tools read (img2dataset, open_clip_train, DataComp; layout ``"community-v1"`` in the manifest):

- an image field (``image`` or ``image.<ext>``) holding a PIL image or a uint8/uint16 array becomes ``KEY.png``
  or ``KEY.jpg``, chosen by the writer's ``image_format`` (None: the field's own extension); greyscale stays
  single-channel (``L``/``I;16`` are written as they are; a 16-bit image asked for as JPEG is kept as PNG,
  because JPEG cannot hold it); an image field that already holds encoded bytes keeps its bytes and extension;
- every other field keeps its name, and its last dot part is the encoding: ``npy`` (``np.save``), ``json``,
  ``txt``, ``cls`` (integer), or bytes/str written as they are (``lightcurve.npy``, ``captions.json`` ...).

A sample may name the ``__group__`` it belongs to (the article of a figure: ``"article PMC123"``); it is not
written, but the writer lists each group's keys, so the ingest engine can drop a group from a work unit when an
earlier unit read it, as the source drops a repeat within a unit (:mod:`clipzoo.core.ingest_engine`).

Shard sets written before this layout (``"clipzoo-v0"``, no ``layout`` in the manifest) used ``KEY.image.png``.

Tar headers are fixed (mtime 0, uid/gid 0, no user names, mode 0644) and the encoders are deterministic, so the
same samples give the same bytes and sha256 on every run and machine. Writing imports only the standard library,
numpy and PIL (no torch: webdataset's TarWriter pulls torch in, ~2.8 s and ~630 MB per process).

Each shard is written as ``NAME.tar.partial`` and renamed to ``NAME.tar`` once it is complete and fsynced, so
a crashed writer never leaves a tar that looks whole. Used on its own, :class:`ShardWriter` writes
``manifest.json`` (temp file, then ``os.replace``) when it closes; inside an ingest run the engine writes the
manifest after all work units are done (:mod:`clipzoo.core.ingest_engine`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from clipzoo.core.io import atomic_write_text  # re-exported: checkpoint/registry code imports it from here

__all__ = ["MANIFEST_NAME", "LAYOUT", "Manifest", "ShardInfo", "ShardWriter", "DuplicateKeyError", "safe_key",
           "atomic_write_text", "encode_sample", "copy_shard_without"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
LAYOUT = "community-v1"
LEGACY_LAYOUT = "clipzoo-v0"
IMAGE_FORMATS = ("png", "jpg")
_KEY_OK = re.compile(r"[^A-Za-z0-9_\-]")


class DuplicateKeyError(ValueError):
    """Two samples share a key: a source bug (keys must be unique), never a skip."""


def safe_key(*parts: object) -> str:
    """A webdataset key from arbitrary parts: dots would split key from extension, so none survive."""
    return "_".join(_KEY_OK.sub("-", str(p)) for p in parts if str(p))


@dataclass
class ShardInfo:
    name: str
    samples: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    """What a shard folder holds and how it was made. Read by the loader, `shards inspect` and cards.

    ``layout`` names the member naming scheme (see the module docstring); a manifest without one is an old
    ``"clipzoo-v0"`` set.
    """

    shards: list[ShardInfo] = field(default_factory=list)
    created: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    ingest: dict[str, Any] = field(default_factory=dict)
    layout: str = LAYOUT

    @property
    def num_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    def to_json(self) -> str:
        data = asdict(self)
        data["num_samples"] = self.num_samples
        return json.dumps(data, indent=2, sort_keys=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """A manifest from its parsed JSON, wherever it was read from (a folder, an object store, HTTP)."""
        return cls(
            shards=[ShardInfo(**s) for s in data.get("shards", [])],
            created=data.get("created", ""),
            source=data.get("source", {}),
            ingest=data.get("ingest", {}),
            layout=data.get("layout", LEGACY_LAYOUT),
        )

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        path = Path(folder) / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no manifest.json; is {folder} a shard folder written by clipzoo?")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def shard_paths(self, folder: str | Path) -> list[str]:
        return [str(Path(folder) / s.name) for s in self.shards]


# -- encoders -------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    """numpy scalars/arrays and paths in metadata become plain JSON; anything else is a source bug."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode_image(value: Any, fmt: str, quality: int) -> tuple[str, bytes]:
    """(member extension, bytes) of a PIL image or array; greyscale and 16-bit stay as they are."""
    import numpy as np
    from PIL import Image

    if isinstance(value, np.ndarray):
        if value.dtype == np.uint16 and value.ndim == 2:
            value = Image.fromarray(value)  # mode I;16
        elif value.dtype == np.uint8 and (value.ndim == 2 or (value.ndim == 3 and value.shape[2] in (1, 3, 4))):
            value = Image.fromarray(value[..., 0] if value.ndim == 3 and value.shape[2] == 1 else value)
        else:
            raise ValueError(f"an image array must be uint8 HxW[xC] or uint16 HxW, not {value.dtype} {value.shape}; "
                             "store other arrays as a .npy field")
    if not isinstance(value, Image.Image):
        raise ValueError(f"an image field holds {type(value).__name__}, not a PIL image, array or encoded bytes")
    buf = io.BytesIO()
    if fmt == "jpg" and value.mode in ("L", "RGB", "CMYK"):
        value.save(buf, format="JPEG", quality=quality)
        return "jpg", buf.getvalue()
    if fmt == "jpg" and value.mode in ("RGBA", "P", "LA", "1"):  # JPEG has no alpha or palette
        value.convert("L" if value.mode in ("LA", "1") else "RGB").save(buf, format="JPEG", quality=quality)
        return "jpg", buf.getvalue()
    value.save(buf, format="PNG")  # PNG holds every mode a source yields, 16-bit greyscale included
    return "png", buf.getvalue()


def _encode_value(value: Any, ext: str) -> bytes:
    import numpy as np

    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # already text (webdataset's rule too): written as it is
        return value.encode("utf-8")
    if ext == "json":
        return json.dumps(value, default=_json_default).encode("utf-8")
    if ext == "npy":
        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        return buf.getvalue()
    if ext in ("cls", "cls2", "index", "id"):
        return str(int(value)).encode("ascii")
    raise ValueError(f"no encoder for a {type(value).__name__} in a .{ext} field")


def encode_sample(sample: dict[str, Any], *, image_format: str | None = None,
                  jpeg_quality: int = 95) -> list[tuple[str, bytes]]:
    """The tar members (name, bytes) of one sample, in field order (see the module docstring)."""
    key = sample["__key__"]
    members = []
    for name, value in sample.items():
        if name.startswith("__"):
            continue
        head, _, ext = name.rpartition(".")
        if name == "image" or (head == "image" and not isinstance(value, bytes) and ext in ("png", "jpg", "jpeg")):
            fmt = image_format or ("jpg" if ext in ("jpg", "jpeg") else "png")
            ext, data = _encode_image(value, fmt, jpeg_quality)
            members.append((f"{key}.{ext}", data))
        elif head == "image" and ext in ("png", "jpg", "jpeg", "webp"):  # already encoded: bytes kept as they are
            members.append((f"{key}.{ext}", value))
        else:
            members.append((f"{key}.{name}", _encode_value(value, ext or name)))
    return members


class _HashingFile(io.RawIOBase):
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, fh):
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        return self._fh.write(b)

    def flush(self) -> None:
        self._fh.flush()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    """A member header with nothing machine- or time-dependent in it, so shard bytes are reproducible."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def copy_shard_without(src, dst, keys: set[str]) -> tuple[int, int, str]:
    """Copy the shard read from ``src`` to ``dst`` (binary file objects) without the samples named in ``keys``.

    Members keep their order and their fixed headers, so what is kept has the bytes a writer given only those
    samples would write. Returns (samples kept, bytes written, sha256 of them). Used by the ingest engine to
    drop a sample that an earlier work unit already wrote.
    """
    hashing = _HashingFile(dst)
    kept: list[str] = []
    with tarfile.open(fileobj=src, mode="r|") as reader, \
            tarfile.open(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT) as writer:
        for member in reader:
            if not member.isfile():
                raise ValueError(f"shard member {member.name!r} is not a regular file")
            key = member.name.partition(".")[0]
            data = reader.extractfile(member).read()
            if key in keys:
                continue
            if not kept or kept[-1] != key:
                kept.append(key)
            writer.addfile(_tarinfo(member.name, len(data)), io.BytesIO(data))
    return len(kept), hashing.size, hashing.sha.hexdigest()


class ShardWriter:
    """Write samples into ``out_dir/{prefix}-{index:06d}.tar`` shards (``{prefix}-u{unit:05d}-{index:06d}.tar``
    when writing one work unit of an ingest run).

    ``max_count`` and ``max_bytes`` bound each shard (the shard closes once either is reached). Use as a context
    manager; on a clean exit the manifest is written (unless ``write_manifest=False``: the ingest engine writes
    it after every unit). If the body raises, the current partial shard is deleted and no manifest is written:
    the folder holds only whole shards, and without a manifest nobody mistakes it for a finished shard set.
    ``on_shard(path, info)`` is called once each shard is complete (the engine uploads it to remote storage).
    """

    def __init__(
        self,
        out_dir: str | Path,
        prefix: str = "shard",
        max_count: int = 10_000,
        max_bytes: int = 1 << 30,
        source: dict[str, Any] | None = None,
        *,
        unit: int | None = None,
        image_format: str | None = None,
        jpeg_quality: int = 95,
        write_manifest: bool = True,
        on_shard: Callable[[Path, ShardInfo], None] | None = None,
    ):
        if max_count < 1 or max_bytes < 1:
            raise ValueError("max_count and max_bytes must be positive")
        if image_format not in (None, *IMAGE_FORMATS):
            raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, not {image_format!r}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, not {jpeg_quality}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.unit = unit
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self.write_manifest = write_manifest
        self.on_shard = on_shard
        self.manifest = Manifest(source=dict(source or {}))
        self.keys: list[str] = []
        self.groups: dict[str, list[str]] = {}  # a sample's __group__ -> the keys of its samples, in order
        self._index = 0
        self._tar: tarfile.TarFile | None = None
        self._raw = None
        self._hash: _HashingFile | None = None
        self._count = 0
        self._seen: set[str] = set()

    # -- shard lifecycle ------------------------------------------------------------------------
    def _shard_name(self) -> str:
        unit = f"u{self.unit:05d}-" if self.unit is not None else ""
        return f"{self.prefix}-{unit}{self._index:06d}.tar"

    def _open(self) -> None:
        path = self.out_dir / (self._shard_name() + ".partial")
        self._raw = open(path, "wb")
        self._hash = _HashingFile(self._raw)
        self._tar = tarfile.open(fileobj=self._hash, mode="w", format=tarfile.PAX_FORMAT)
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
            info = ShardInfo(name, self._count, self._hash.size, self._hash.sha.hexdigest())
            self.manifest.shards.append(info)
            self._index += 1
            if self.on_shard is not None:
                self.on_shard(self.out_dir / name, info)
        self._tar = self._raw = self._hash = None

    def _abort(self) -> None:
        if self._tar is None:
            return
        try:
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
        if key in self._seen:
            raise DuplicateKeyError(f"duplicate sample key {key!r}")
        members = encode_sample(sample, image_format=self.image_format, jpeg_quality=self.jpeg_quality)
        self._seen.add(key)
        self.keys.append(key)
        if sample.get("__group__"):
            group = str(sample["__group__"])
            self.groups.setdefault(group, []).append(key)
        if self._tar is None:
            self._open()
        for name, data in members:
            self._tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
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
        if self.write_manifest:
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
