"""Benchmark task kinds. A domain registers named tasks built from these and the dataset helpers::

    from clipzoo.core.bench.tasks import ZeroShotClassification
    from clipzoo.core.bench.datasets import ImageFolder

    def fundus_zeroshot(root="/data/fundus", **options):
        return ZeroShotClassification(dataset=ImageFolder(root=root), templates=["a fundus photo of {c}."], **options)

    registry.add_task("biomed/fundus-zeroshot", fundus_zeroshot)   # in the plugin's register()

Every task scores an :class:`~clipzoo.core.bench.cache.Embedder` (embeddings come from the cache):
``score()`` returns :class:`~clipzoo.core.bench.metrics.ItemScores` (per-test-item statistics and each
metric's chance level, from which the harness bootstraps intervals) and ``evaluate()`` their point values
``{metric: float}``; ``primary`` names the headline metric used by the leaderboard and the promotion rule.
``fingerprint()`` hashes the task's resolved settings and its datasets' fingerprints: two scores are
comparable only when their fingerprints are equal. Prompt templates use ``{c}`` for the class name (clip_benchmark's
convention).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from clipzoo.core.bench import metrics as M
from clipzoo.core.bench.cache import Embedder, SampleEmbeddings
from clipzoo.core.bench.datasets import Dataset, DatasetError

log = logging.getLogger(__name__)

DEFAULT_TEMPLATES = ("a photo of a {c}.",)


class Task(ABC):
    """Base class: ``kind``, ``primary`` metric, ``score(embedder) -> ItemScores`` and ``evaluate``."""

    kind: ClassVar[str] = "task"
    primary: ClassVar[str] = "top1"

    @abstractmethod
    def score(self, embedder: Embedder) -> M.ItemScores:
        """Run the task on the model behind ``embedder``; return its per-test-item scores."""

    def evaluate(self, embedder: Embedder) -> dict[str, float]:
        """Run the task; return ``{metric: value}`` (the point values of :meth:`score`)."""
        return self.score(embedder).values()

    def fingerprint(self) -> str:
        """Hash of :meth:`describe` (resolved settings + dataset fingerprints): equal only for comparable scores."""
        return task_fingerprint(self.describe())

    def describe(self) -> dict[str, Any]:
        """Settings recorded with the results (datasets by name and fingerprint)."""
        out: dict[str, Any] = {"kind": self.kind, "primary": self.primary}
        for name, value in vars(self).items():
            if isinstance(value, Dataset):
                out[name] = {"name": value.name, "fingerprint": value.fingerprint()}
            elif isinstance(value, (str, int, float, bool, type(None))) or name in ("templates", "modalities", "classnames"):
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


def task_fingerprint(settings: dict[str, Any]) -> str:
    """The fingerprint of a task's recorded settings (any JSON-able dict, keys sorted)."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _classnames(explicit: Sequence[str] | None, dataset: Dataset, task: str) -> list[str]:
    names = list(explicit) if explicit is not None else dataset.classnames
    if not names:
        raise DatasetError(f"{task}: dataset {dataset.name} has no class names; pass classnames=[...]")
    return list(names)


def _labelled(se: SampleEmbeddings, dataset: Dataset, what: str) -> tuple[np.ndarray, np.ndarray]:
    emb, labels, _ = _labelled_items(se, dataset, what)
    return emb, labels


def _labelled_items(se: SampleEmbeddings, dataset: Dataset, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings, labels and dataset indices of the samples that have the modality and a label."""
    keep = se.present & (se.labels >= 0)
    if not keep.any():
        raise DatasetError(f"{what}: dataset {dataset.name} has no labelled samples with this modality")
    return se.emb[keep], se.labels[keep], np.flatnonzero(keep)


def zeroshot_weights(embedder: Embedder, classnames: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """Zero-shot classifier ``[D, C]``: each class's prompts embedded, normalised, averaged, normalised."""
    prompts = [t.format(c=c) for c in classnames for t in templates]
    emb = embedder.texts(prompts).reshape(len(classnames), len(templates), -1)
    return M.zeroshot_classifier(emb)


@dataclass
class ZeroShotClassification(Task):
    """Class names x prompt templates -> text classifier; top-1, top-5 (>= 5 classes), mean per-class recall."""

    dataset: Dataset
    classnames: Sequence[str] | None = None
    templates: Sequence[str] = DEFAULT_TEMPLATES
    modality: str = "image"
    kind: ClassVar[str] = "zeroshot_classification"
    primary: ClassVar[str] = "top1"

    def score(self, embedder: Embedder) -> M.ItemScores:
        names = _classnames(self.classnames, self.dataset, self.kind)
        se = embedder.samples(self.dataset, self.modality)
        emb, labels, items = _labelled_items(se, self.dataset, self.kind)
        if labels.max() >= len(names):
            raise DatasetError(f"{self.kind}: label {labels.max()} but only {len(names)} class names")
        logits = M.LOGIT_SCALE * emb @ zeroshot_weights(embedder, names, self.templates)
        return M.classification_scores(logits, labels, items=items, n_items=len(se.labels))


@dataclass
class Retrieval(Task):
    """Image <-> text retrieval: R@1/5/10 both ways and their mean; every caption of a sample counts."""

    dataset: Dataset
    modality: str = "image"
    text_modality: str | None = None
    ks: Sequence[int] = M.RECALL_KS
    kind: ClassVar[str] = "retrieval"
    primary: ClassVar[str] = "mean_recall"

    def score(self, embedder: Embedder) -> M.ItemScores:
        items = embedder.samples(self.dataset, self.modality)
        text_emb, owners = embedder.captions(self.dataset, self.text_modality)
        keep = np.flatnonzero(items.present)
        if len(keep) < len(items.present):  # drop samples without the modality and their captions
            remap = -np.ones(len(items.present), dtype=np.int64)
            remap[keep] = np.arange(len(keep))
            text_keep = items.present[owners]
            items_emb, text_emb, owners = items.emb[keep], text_emb[text_keep], remap[owners[text_keep]]
        else:
            items_emb = items.emb
        text_name = self.text_modality or embedder.model.text_modality or "text"
        return M.retrieval_scores(items_emb, text_emb, owners, names=(self.modality, text_name), ks=tuple(self.ks),
                                  items=keep, n_items=len(items.present))


@dataclass
class NModalRetrieval(Task):
    """Retrieval between every pair of the named modalities (e.g. light curve, spectrum, metadata).

    A pair is scored on the samples that have both modalities (non-empty masks). Metrics
    ``{a}2{b}_R{k}`` for both directions of each pair, and ``mean_recall`` over all of them; how many samples
    each pair was scored on is the count ``{a}_{b}_pairs`` (a fact about the data, not a metric).
    """

    dataset: Dataset
    modalities: Sequence[str] = ()
    ks: Sequence[int] = M.RECALL_KS
    kind: ClassVar[str] = "nmodal_retrieval"
    primary: ClassVar[str] = "mean_recall"

    def score(self, embedder: Embedder) -> M.ItemScores:
        if len(self.modalities) < 2:
            raise ValueError(f"{self.kind} needs at least two modalities, got {list(self.modalities)}")
        embs = {m: embedder.samples(self.dataset, m) for m in self.modalities}
        n_items = len(next(iter(embs.values())).present)
        out = M.ItemScores(n_items)
        for a, b in itertools.combinations(self.modalities, 2):
            both = embs[a].present & embs[b].present
            if both.sum() < 2:
                log.warning("%s: only %d samples have both %s and %s; pair skipped", self.kind, both.sum(), a, b)
                continue
            items = np.flatnonzero(both)
            out.update(M.retrieval_scores(embs[a].emb[both], embs[b].emb[both], np.arange(len(items)), names=(a, b),
                                          ks=tuple(self.ks), items=items, n_items=n_items, with_mean=False))
            out.add_count(f"{a}_{b}_pairs", int(both.sum()))
        recalls = [m for m in out.measured if "_R" in m]
        if not recalls:
            raise DatasetError(f"{self.kind}: no pair of {list(self.modalities)} shares two or more samples in {self.dataset.name}")
        out.add_average("mean_recall", recalls)
        return out


@dataclass
class LinearProbe(Task):
    """Logistic regression on frozen embeddings of ``train``, scored on ``test``."""

    train: Dataset
    test: Dataset
    modality: str = "image"
    C: float = 1.0
    max_iter: int = 1000
    seed: int = 0
    kind: ClassVar[str] = "linear_probe"
    primary: ClassVar[str] = "top1"

    def score(self, embedder: Embedder) -> M.ItemScores:
        x_train, y_train = _labelled(embedder.samples(self.train, self.modality), self.train, self.kind)
        test = embedder.samples(self.test, self.modality)
        x_test, y_test, items = _labelled_items(test, self.test, self.kind)
        return M.linear_probe_scores(x_train, y_train, x_test, y_test, C=self.C, max_iter=self.max_iter, seed=self.seed,
                                     items=items, n_items=len(test.labels))


@dataclass
class NModalClassification(Task):
    """Linear probes on each named modality and on their fusion (mean of the present normalised embeddings)."""

    train: Dataset
    test: Dataset
    modalities: Sequence[str] = ()
    C: float = 1.0
    max_iter: int = 1000
    seed: int = 0
    kind: ClassVar[str] = "nmodal_classification"
    primary: ClassVar[str] = "fused_top1"

    def _fused(self, embedder: Embedder, dataset: Dataset
               ) -> tuple[dict[str, SampleEmbeddings], np.ndarray, np.ndarray, np.ndarray]:
        embs = {m: embedder.samples(dataset, m) for m in self.modalities}
        stack = np.stack([e.emb * e.present[:, None] for e in embs.values()])
        count = np.stack([e.present for e in embs.values()]).sum(axis=0)
        fused = M.l2_normalize(stack.sum(axis=0) / np.maximum(count, 1)[:, None])
        labels = next(iter(embs.values())).labels
        keep = (count > 0) & (labels >= 0)
        return embs, fused[keep], labels[keep], np.flatnonzero(keep)

    def score(self, embedder: Embedder) -> M.ItemScores:
        if not self.modalities:
            raise ValueError(f"{self.kind} needs the modalities to classify from")
        train_embs, x_train, y_train, _ = self._fused(embedder, self.train)
        test_embs, x_test, y_test, fused_items = self._fused(embedder, self.test)
        n_items = len(next(iter(test_embs.values())).labels)
        probe = dict(C=self.C, max_iter=self.max_iter, seed=self.seed, n_items=n_items)
        out = M.ItemScores(n_items)
        for m in self.modalities:
            xa, ya = _labelled(train_embs[m], self.train, f"{self.kind} ({m})")
            xb, yb, items = _labelled_items(test_embs[m], self.test, f"{self.kind} ({m})")
            out.update(M.linear_probe_scores(xa, ya, xb, yb, items=items, **probe).prefixed(f"{m}_"))
        out.update(M.linear_probe_scores(x_train, y_train, x_test, y_test, items=fused_items, **probe).prefixed("fused_"))
        return out


def sample_shots(labels: np.ndarray, shots: int, n_classes: int, seed: int) -> np.ndarray:
    """Indices of ``shots`` samples per class (all of a class if it has fewer), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) == 0:
            raise DatasetError(f"GDA few-shot: class {c} has no training sample")
        picked.append(np.sort(rng.choice(idx, size=min(shots, len(idx)), replace=False)))
    return np.concatenate(picked)


@dataclass
class GDAFewShot(Task):
    """Training-free few-shot adaptation by Gaussian discriminant analysis, ensembled with zero-shot logits.

    Wang et al., "A Hard-to-Beat Baseline for Training-free CLIP-based Adaptation" (ICLR 2024): class
    means and one shared covariance from ``shots`` samples per class of ``train``; test logits are
    ``100 x @ T + alpha (x @ W + b)``. ``alpha`` is chosen on ``val`` from the paper's grid when a
    validation set is given, else the fixed ``alpha``.
    """

    train: Dataset
    test: Dataset
    classnames: Sequence[str] | None = None
    templates: Sequence[str] = DEFAULT_TEMPLATES
    shots: int = 16
    seed: int = 0
    alpha: float = 1.0
    val: Dataset | None = None
    modality: str = "image"
    kind: ClassVar[str] = "gda_fewshot"
    primary: ClassVar[str] = "top1"

    def score(self, embedder: Embedder) -> M.ItemScores:
        names = _classnames(self.classnames, self.test, self.kind)
        x_train, y_train = _labelled(embedder.samples(self.train, self.modality), self.train, self.kind)
        test = embedder.samples(self.test, self.modality)
        x_test, y_test, items = _labelled_items(test, self.test, self.kind)
        shots = sample_shots(y_train, self.shots, len(names), self.seed)
        weights, bias = M.gda_fit(x_train[shots], y_train[shots], len(names))
        classifier = zeroshot_weights(embedder, names, self.templates)
        alpha = self.alpha
        if self.val is not None:
            x_val, y_val = _labelled(embedder.samples(self.val, self.modality), self.val, self.kind)
            alpha = M.gda_select_alpha(x_val, y_val, classifier, weights, bias)
        n_items = len(test.labels)
        out = M.classification_scores(M.gda_logits(x_test, classifier, weights, bias, alpha), y_test,
                                      items=items, n_items=n_items)
        zeroshot = M.classification_scores(M.LOGIT_SCALE * x_test @ classifier, y_test, items=items, n_items=n_items)
        top1 = zeroshot.ratios["top1"]
        out.add_ratio("zeroshot_top1", *top1, zeroshot.chance["top1"], zeroshot.chance_rule["top1"])
        out.add_info("alpha", float(alpha))
        out.add_count("shots_used", len(shots))
        return out
