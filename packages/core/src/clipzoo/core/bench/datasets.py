"""Evaluation datasets: what a benchmark task reads its samples from.

Every dataset yields *decoded* samples in the shard format of docs/ARCHITECTURE.md (``__key__``,
``image.png``/``image.jpg`` as a PIL image or ``image.npy`` as an array, ``txt`` or ``captions.json``,
``cls``, ``<name>.npy`` arrays with ``<name>_mask.npy``), so the model's own ``SampleTransform`` turns
them into batches, exactly as in training. Each dataset has a ``fingerprint`` (what the embedding cache
is keyed on together with the model's weights hash) and optional ``classnames``.

Helpers a domain uses to define tasks:
- :class:`ImageFolder` -- ``root/<class name>/<image>`` (torchvision's layout);
- :class:`CsvDataset` -- a CSV with ``path,label`` (and optional caption) columns;
- :class:`ShardFolder` -- a shard folder written by ``clipzoo ingest`` (captions from ``txt`` or
  ``captions.json``, label from ``cls`` or a ``json`` field);
- :class:`SampleList` -- samples made in memory (synthetic sets, arrays of an N-modal task).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from clipzoo.core.data.formats import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = IMAGE_SUFFIXES + (".npy",)  # image files, and arrays for multispectral folders


class DatasetError(ValueError):
    """A dataset that cannot be read as asked (missing folder, no images, unknown label): one clear line."""


def _hash_parts(parts: Iterable[object]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_stamp(path: Path) -> str:
    """``path:size:mtime_ns``: what a dataset fingerprint records of a file it reads (cheaper than hashing its bytes,
    and it changes whenever the file is rewritten)."""
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def load_image_sample(path: Path, key: str) -> dict[str, Any]:
    """A decoded sample for one image file: ``image.npy`` for arrays, else ``image.<ext>`` as an RGB PIL image."""
    if path.suffix.lower() == ".npy":
        import numpy as np

        return {"__key__": key, "image.npy": np.load(path)}
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        ext = "jpg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
        return {"__key__": key, f"image.{ext}": img.convert("RGB")}


def captions_of(sample: dict[str, Any]) -> list[str]:
    """All captions of a decoded sample: ``captions.json`` texts, else the ``txt`` caption."""
    caps = sample.get("captions.json")
    if caps:
        return [c["text"] if isinstance(c, dict) else str(c) for c in caps]
    txt = sample.get("txt")
    if isinstance(txt, bytes):
        txt = txt.decode("utf-8")
    return [txt] if txt else []


@dataclass
class Dataset(ABC):
    """Base class: a finite, ordered collection of decoded samples."""

    name: str = ""
    classnames: list[str] | None = None
    # files or samples the last pass could not read: {"path", "reason"}; the pass goes on without them
    skipped: list[dict[str, str]] = field(default_factory=list, repr=False, compare=False)

    @abstractmethod
    def samples(self) -> Iterator[dict[str, Any]]:
        """The decoded samples, in a fixed order."""

    def skip(self, path: object, reason: str) -> None:
        log.warning("%s: skipped %s: %s", self.name or type(self).__name__, path, reason)
        self.skipped.append({"path": str(path), "reason": reason})

    @abstractmethod
    def fingerprint(self) -> str:
        """A hash that changes when the data does (the embedding cache keys on it)."""

    def labels(self) -> list[int]:
        out = []
        for sample in self.samples():
            if "cls" not in sample:
                raise DatasetError(f"dataset {self.name or type(self).__name__}: sample {sample['__key__']} has no label")
            out.append(int(sample["cls"]))
        return out


@dataclass
class ImageFolder(Dataset):
    """``root/<class>/<image file>``; class indices follow the sorted folder names.

    ``classnames`` overrides the display names (same order as the sorted folders); by default the folder
    names with ``_`` read as spaces.
    """

    root: Path | str = ""
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise DatasetError(f"image folder {self.root} does not exist")
        self.class_folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.files: list[tuple[Path, int]] = []
        for index, folder in enumerate(self.class_folders):
            for path in sorted((self.root / folder).rglob("*")):
                if path.is_file() and path.suffix.lower() in self.extensions:
                    self.files.append((path, index))
        if not self.files:
            found = ", ".join(self.class_folders[:10]) or "no subfolders"
            loose = sorted(p.name for p in self.root.iterdir() if p.is_file())[:5]
            raise DatasetError(
                f"image folder {self.root} holds no images ({' '.join(self.extensions)}) in class subfolders; "
                f"found: {found}" + (f"; loose files: {', '.join(loose)}" if loose else "")
            )
        if self.classnames is None:
            self.classnames = [f.replace("_", " ") for f in self.class_folders]
        elif len(self.classnames) != len(self.class_folders):
            raise DatasetError(
                f"{len(self.classnames)} class names given for {len(self.class_folders)} class folders in {self.root}"
            )
        self.name = self.name or self.root.name

    def __len__(self) -> int:
        return len(self.files)

    def samples(self) -> Iterator[dict[str, Any]]:
        from clipzoo.core.data.writer import safe_key

        self.skipped = []
        for i, (path, label) in enumerate(self.files):
            try:
                sample = load_image_sample(path, safe_key(f"{i:06d}", path.stem))
            except (OSError, ValueError, SyntaxError) as exc:  # truncated or not an image
                self.skip(path, f"unreadable image: {exc}")
                continue
            sample["cls"] = label
            sample["json"] = {"source": str(path), "classname": self.classnames[label]}
            yield sample

    def labels(self) -> list[int]:
        return [label for _, label in self.files]

    def fingerprint(self) -> str:
        rel = ((p.relative_to(self.root), label, p.stat().st_size, p.stat().st_mtime_ns) for p, label in self.files)
        return _hash_parts(["imagefolder", *self.class_folders, *rel])


@dataclass
class CsvDataset(Dataset):
    """A CSV with one row per image: ``path`` (relative to the CSV's folder or ``root``) and ``label``.

    Labels may be integers or class names (names are looked up in ``classnames``, or collected in
    sorted order when ``classnames`` is not given). ``caption_column`` adds a ``txt`` caption.
    """

    csv_path: Path | str = ""
    root: Path | str | None = None
    path_column: str = "path"
    label_column: str | None = "label"
    caption_column: str | None = None

    def __post_init__(self) -> None:
        self.csv_path = Path(self.csv_path)
        if not self.csv_path.is_file():
            raise DatasetError(f"CSV file {self.csv_path} does not exist")
        self.root = Path(self.root) if self.root is not None else self.csv_path.parent
        with open(self.csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            wanted = [c for c in (self.path_column, self.label_column, self.caption_column) if c]
            missing = [c for c in wanted if c not in columns]
            if missing:
                raise DatasetError(f"{self.csv_path}: no column {', '.join(missing)}; columns are {', '.join(columns)}")
            self.rows = list(reader)
        if not self.rows:
            raise DatasetError(f"{self.csv_path} lists no images")
        if self.label_column:
            raw = [row[self.label_column].strip() for row in self.rows]
            if all(r.lstrip("-").isdigit() for r in raw):
                self._labels = [int(r) for r in raw]
            else:
                if self.classnames is None:
                    self.classnames = sorted(set(raw))
                index = {c: i for i, c in enumerate(self.classnames)}
                unknown = sorted(set(raw) - set(index))
                if unknown:
                    raise DatasetError(f"{self.csv_path}: labels {unknown} are not among the class names {self.classnames}")
                self._labels = [index[r] for r in raw]
        else:
            self._labels = []
        absent = [row[self.path_column] for row in self.rows if not (self.root / row[self.path_column]).is_file()]
        if absent:
            raise DatasetError(
                f"{self.csv_path}: {len(absent)} listed image(s) not found under {self.root}, e.g. {absent[0]}"
            )
        self.name = self.name or self.csv_path.stem

    def __len__(self) -> int:
        return len(self.rows)

    def samples(self) -> Iterator[dict[str, Any]]:
        from clipzoo.core.data.writer import safe_key

        self.skipped = []
        for i, row in enumerate(self.rows):
            path = self.root / row[self.path_column]
            try:
                sample = load_image_sample(path, safe_key(f"{i:06d}", path.stem))
            except (OSError, ValueError, SyntaxError) as exc:
                self.skip(path, f"unreadable image: {exc}")
                continue
            sample["json"] = {"source": str(path)}
            if self._labels:
                sample["cls"] = self._labels[i]
            if self.caption_column:
                sample["txt"] = row[self.caption_column]
            yield sample

    def labels(self) -> list[int]:
        if not self._labels:
            raise DatasetError(f"{self.csv_path}: no label column, so no labels")
        return list(self._labels)

    def fingerprint(self) -> str:
        files = sorted({self.root / row[self.path_column] for row in self.rows})
        return _hash_parts(["csv", file_stamp(self.csv_path), self.path_column, self.label_column,
                            self.caption_column, *(self.classnames or []), *map(file_stamp, files)])


@dataclass
class ShardFolder(Dataset):
    """Samples of a shard folder written by ``clipzoo ingest`` (its ``manifest.json`` lists the shards).

    The label is the ``cls`` member, or ``json[label_field]`` when ``label_field`` is set (a class name
    looked up in ``classnames``, or an integer). ``limit`` keeps only the first samples.
    """

    folder: Path | str = ""
    label_field: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        from clipzoo.core.data.writer import MANIFEST_NAME, Manifest

        self.folder = Path(self.folder)
        if not (self.folder / MANIFEST_NAME).is_file():
            raise DatasetError(f"{self.folder} is not a shard folder (no {MANIFEST_NAME}); write one with 'clipzoo ingest'")
        self.manifest = Manifest.load(self.folder)
        if not self.manifest.shards:
            raise DatasetError(f"shard folder {self.folder} holds no samples (its manifest lists no shards)")
        self.name = self.name or self.folder.name

    def __len__(self) -> int:
        n = self.manifest.num_samples
        return min(n, self.limit) if self.limit is not None else n

    def _label(self, sample: dict[str, Any]) -> int | None:
        if self.label_field is None:
            return int(sample["cls"]) if "cls" in sample else None
        value = (sample.get("json") or {}).get(self.label_field)
        if value is None:
            return None
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
        if not self.classnames or value not in self.classnames:
            raise DatasetError(f"{self.folder}: label {value!r} of sample {sample['__key__']} is not a known class name "
                               f"({', '.join(self.classnames or []) or 'no class names given'})")
        return self.classnames.index(value)

    def samples(self) -> Iterator[dict[str, Any]]:
        import webdataset as wds

        from clipzoo.core.data.shardset import iter_samples, resolve_shard_set

        self.skipped = []

        def on_skip(shard: str, reason: str) -> None:  # a truncated or corrupt shard: note it, go on with the next
            self.skip(str(shard), f"unreadable shard: {reason.removeprefix(f'{shard}: ')}")

        stream = iter_samples(resolve_shard_set(self.folder), on_bad_shard="skip", on_skip=on_skip)
        decode = wds.autodecode.Decoder([wds.autodecode.imagehandler("pil")])
        emitted = 0
        for raw in stream:
            if self.limit is not None and emitted >= self.limit:
                break
            try:
                sample = decode({k: v for k, v in raw.items() if k != "__url__"})
            except Exception as exc:  # noqa: BLE001 -- any decoder failure (PIL, JSON, npy) is one bad sample
                self.skip(f"{raw.get('__url__')}:{raw.get('__key__')}", f"undecodable sample: {exc}")
                continue
            label = self._label(sample)
            if label is not None:
                sample["cls"] = label
            emitted += 1
            yield sample

    def fingerprint(self) -> str:
        return _hash_parts(["shards", *(s.sha256 for s in self.manifest.shards), self.label_field, self.limit,
                            *(self.classnames or [])])


@dataclass
class SampleList(Dataset):
    """Samples made in memory by ``make()`` (called on each pass); ``key`` names them for the cache.

    ``key`` must change whenever ``make`` would produce different samples (e.g. include the seed and
    count of a synthetic set).
    """

    make: Callable[[], Iterable[dict[str, Any]]] | None = None
    key: str = ""
    length: int | None = None

    def __post_init__(self) -> None:
        if self.make is None or not self.key:
            raise DatasetError("SampleList needs make() and a key that identifies its samples")
        self.name = self.name or self.key

    def __len__(self) -> int:
        if self.length is None:
            self.length = sum(1 for _ in self.make())
        return self.length

    def samples(self) -> Iterator[dict[str, Any]]:
        yield from self.make()

    def fingerprint(self) -> str:
        return _hash_parts(["samples", self.key, *(self.classnames or [])])


def array_dataset(
    arrays: dict[str, Sequence[Any]],
    *,
    masks: dict[str, Sequence[Any]] | None = None,
    labels: Sequence[int] | None = None,
    classnames: list[str] | None = None,
    name: str = "arrays",
) -> SampleList:
    """An N-modal dataset from arrays keyed by modality name (``{"spectrum": [N, L, C], ...}``).

    ``masks[name][i]`` (bool array, True = valid) marks missing modalities; a modality with no mask is
    present everywhere. The fingerprint hashes the array bytes.
    """
    import numpy as np

    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise DatasetError(f"arrays of different lengths: {sizes}")
    n = next(iter(sizes.values()))
    masks = {k: np.asarray(v, dtype=bool) for k, v in (masks or {}).items()}
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
        if k in masks:
            h.update(np.ascontiguousarray(masks[k]).tobytes())
    if labels is not None:
        h.update(np.asarray(labels, dtype=np.int64).tobytes())

    def make() -> Iterator[dict[str, Any]]:
        for i in range(n):
            sample: dict[str, Any] = {"__key__": f"{i:06d}", "json": {"index": i}}
            for k, v in arrays.items():
                sample[f"{k}.npy"] = v[i]
                mask = masks.get(k)
                sample[f"{k}_mask.npy"] = mask[i] if mask is not None else np.ones(v[i].shape[:1], dtype=bool)
            if labels is not None:
                sample["cls"] = int(labels[i])
            yield sample

    return SampleList(name=name, classnames=classnames, make=make, key=f"arrays:{h.hexdigest()[:16]}", length=n)

