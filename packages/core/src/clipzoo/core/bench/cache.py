"""Embeddings computed once per (model weights, dataset, modality) and kept on disk.

The key hashes the weights' sha256, the modality's preprocessing, the dataset fingerprint and what
is embedded (sample modality or captions), so a new version, another preprocessing or a changed
dataset never reads stale vectors. Entries are ``.npz`` files written to a temp name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipzoo.core.bench.datasets import Dataset, DatasetError, captions_of

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    from clipzoo.core.registry.store import clipzoo_home

    return clipzoo_home() / "cache" / "embeddings"


@dataclass
class SampleEmbeddings:
    """One modality of a dataset: embeddings ``[N, D]``, ``present`` ``[N]``, ``labels`` ``[N]`` (-1: none)."""

    emb: np.ndarray
    present: np.ndarray
    labels: np.ndarray

    @property
    def has_labels(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())


class Embedder:
    """Embeds datasets and texts with a :class:`~clipzoo.core.models.LoadedModel`, through the disk cache."""

    def __init__(self, model, cache_dir: str | Path | None = None, *, batch_size: int = 64):
        self.model = model
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.batch_size = batch_size
        self.hits = 0
        self.misses = 0
        self.skipped: dict[str, list[dict[str, str]]] = {}  # dataset name -> what its samples() could not read

    # -- keys and files
    def _key(self, dataset: Dataset, what: str, modality: str) -> str:
        preprocess = json.dumps(self.model.model.preprocess.get(modality, {}), sort_keys=True)
        parts = [self.model.weights_sha256, preprocess, dataset.fingerprint(), what, modality]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]

    def _load(self, key: str) -> dict[str, np.ndarray] | None:
        path = self.cache_dir / f"{key}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                out = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:  # truncated or corrupt: recompute
            log.warning("embedding cache entry %s unreadable (%s); recomputing", path, exc)
            return None
        self.hits += 1
        return out

    def _save(self, key: str, **arrays: np.ndarray) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"{key}.npz"
        tmp = self.cache_dir / f".{key}.tmp{os.getpid()}.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    # -- what tasks ask for
    def samples(self, dataset: Dataset, modality: str) -> SampleEmbeddings:
        """Embeddings of ``modality`` for every sample of ``dataset`` (with labels when samples carry ``cls``)."""
        key = self._key(dataset, "samples", modality)
        cached = self._load(key)
        if cached is None:
            self.misses += 1
            labels: list[int] = []

            def recording():
                for sample in dataset.samples():
                    labels.append(int(sample["cls"]) if "cls" in sample else -1)
                    yield sample

            log.info("embedding %s of %s (%s samples)", modality, dataset.name, _len(dataset))
            emb, present = self.model.encode_samples(recording(), modality, batch_size=self.batch_size, total=_size(dataset))
            if len(emb) == 0:
                raise DatasetError(f"dataset {dataset.name} yielded no samples")
            cached = {"emb": emb, "present": present, "labels": np.asarray(labels, dtype=np.int64),
                      "skipped": np.asarray(json.dumps(dataset.skipped))}
            self._save(key, **cached)
        self._note_skipped(dataset, cached)
        return SampleEmbeddings(cached["emb"], cached["present"].astype(bool), cached["labels"])

    def captions(self, dataset: Dataset, modality: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of every caption ``[M, D]`` and the index of the sample each belongs to ``[M]``."""
        modality = modality or self.model.text_modality
        key = self._key(dataset, "captions", modality or "text")
        cached = self._load(key)
        if cached is None:
            self.misses += 1
            texts: list[str] = []
            owners: list[int] = []
            for i, sample in enumerate(dataset.samples()):
                caps = captions_of(sample)
                if not caps:
                    raise DatasetError(f"dataset {dataset.name}: sample {sample.get('__key__')} has no caption (txt or captions.json)")
                texts.extend(caps)
                owners.extend([i] * len(caps))
            log.info("embedding %d captions of %s", len(texts), dataset.name)
            cached = {"emb": self.model.encode_texts(texts, modality=modality), "owners": np.asarray(owners, dtype=np.int64),
                      "skipped": np.asarray(json.dumps(dataset.skipped))}
            self._save(key, **cached)
        self._note_skipped(dataset, cached)
        return cached["emb"], cached["owners"]

    def _note_skipped(self, dataset: Dataset, cached: dict[str, np.ndarray]) -> None:
        skipped = json.loads(str(cached["skipped"])) if "skipped" in cached else []
        if skipped:
            self.skipped[dataset.name] = skipped

    def texts(self, texts: list[str]) -> np.ndarray:
        """Embeddings of prompts (cheap; not cached)."""
        return self.model.encode_texts(texts)


def _size(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        return None


def _len(dataset: Any) -> str:
    size = _size(dataset)
    return "?" if size is None else str(size)
