"""The astro benchmark task kinds and datasets behind :mod:`clipzoo.astro.tasks` (numpy; imported when a task is built).

- :class:`PrototypeClassification`: nearest class prototype (cosine) per modality and fused, as per-item scores;
- :class:`SimulatedSet` / :class:`SimulatedSplit`: the seeded simulated stars as benchmark datasets, their metadata
  standardised with given statistics, else the model's, else fitted on the training split;
- :class:`SimClassification`, :class:`SimPrototypes`, :class:`SimRetrieval`: core's kinds (and the prototypes) on
  the simulated set, taking the model's feature statistics before they score.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import numpy as np

from clipzoo.core.bench import metrics as M
from clipzoo.core.bench.datasets import Dataset, DatasetError
from clipzoo.core.bench.tasks import NModalClassification, NModalRetrieval


# -- class prototypes ------------------------------------------------------------------------------
def _labelled(se, dataset: Dataset, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings, labels and dataset indices of the samples that have the modality and a label."""
    keep = se.present & (se.labels >= 0)
    if not keep.any():
        raise DatasetError(f"{what}: dataset {dataset.name} has no labelled samples with this modality")
    return se.emb[keep], se.labels[keep], np.flatnonzero(keep)


def prototype_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                     items: np.ndarray, n_items: int) -> M.ItemScores:
    """Nearest class prototype by cosine: each class's mean normalised training embedding, normalised.

    The logits are the cosine similarities to the prototypes, over the label range of train and test (a
    class without training samples can never be predicted), so chance is ``k / classes`` as for core's
    linear probe.
    """
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    logits = np.full((len(x_test), n_classes), -np.inf)
    classes = np.unique(y_train)
    protos = M.l2_normalize(np.stack([x_train[y_train == c].mean(axis=0) for c in classes]))
    logits[:, classes] = M.l2_normalize(x_test) @ protos.T
    return M.classification_scores(logits, y_test, items=items, n_items=n_items)


@dataclass
class PrototypeClassification(NModalClassification):
    """Class prototypes on each named modality and on their fusion (core's fused embedding: the mean of the
    present normalised embeddings, normalised); the classifier is the nearest prototype, not a probe."""

    kind: ClassVar[str] = "prototype_classification"
    primary: ClassVar[str] = "fused_top1"

    def score(self, embedder) -> M.ItemScores:
        if not self.modalities:
            raise ValueError(f"{self.kind} needs the modalities to classify from")
        train_embs, x_train, y_train, _ = self._fused(embedder, self.train)
        test_embs, x_test, y_test, fused_items = self._fused(embedder, self.test)
        n_items = len(next(iter(test_embs.values())).labels)
        out = M.ItemScores(n_items)
        for m in self.modalities:
            xa, ya, _ = _labelled(train_embs[m], self.train, f"{self.kind} ({m})")
            xb, yb, items = _labelled(test_embs[m], self.test, f"{self.kind} ({m})")
            out.update(prototype_scores(xa, ya, xb, yb, items=items, n_items=n_items).prefixed(f"{m}_"))
        out.update(prototype_scores(x_train, y_train, x_test, y_test, items=fused_items, n_items=n_items)
                   .prefixed("fused_"))
        return out

    def describe(self) -> dict[str, Any]:
        settings = super().describe()
        for probe_only in ("C", "max_iter", "seed"):  # the linear probe's settings do not apply here
            settings.pop(probe_only, None)
        return settings


# -- the simulated set -------------------------------------------------------------------------------
def model_feature_stats(preprocess: dict[str, Any]):
    """The metadata feature statistics a model carries (``preprocess["metadata"]["feature_stats"]``), or None."""
    from clipzoo.astro.catalogs import FeatureStats

    found = (preprocess.get("metadata") or {}).get("feature_stats")
    return FeatureStats.checked(found, "the model's preprocess.metadata.feature_stats") if found else None


@dataclass
class SimulatedSet:
    """Both splits of the seeded simulated set, generated once; ``bind`` takes the model's feature statistics.

    The statistics, in order: ``stats`` (a path) when given, else the model's (after :meth:`bind`), else
    fitted on the training split. ``tag`` names the split settings and the statistics by content, so a
    model's statistics and the same statistics given as ``stats=`` make the same fingerprint.
    """

    n_per_class: int = 100
    seed: int = 0
    test_per_class: int = 40
    test_seed: int = 1
    stats: str | None = None
    model_stats: Any = None  # FeatureStats from the model (bind), used when no ``stats`` path is given
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def bind(self, preprocess: dict[str, Any]) -> None:
        """Use the feature statistics of a model's ``preprocess`` (unless ``stats`` was given)."""
        found = model_feature_stats(preprocess)
        if self.stats is None and found != self.model_stats:
            self.model_stats, self._cache = found, {}

    def _given(self):
        from clipzoo.astro.catalogs import FeatureStats

        if self.stats is None:
            return self.model_stats
        if "given" not in self._cache:
            self._cache["given"] = FeatureStats.load(self.stats)
        return self._cache["given"]

    def tag(self) -> str:
        given = self._given()
        which = "fit" if given is None else hashlib.sha256(
            json.dumps(given.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
        return f"n{self.n_per_class}-s{self.seed}-t{self.test_per_class}-ts{self.test_seed}-{which}"

    def split(self, name: str) -> list[dict[str, Any]]:
        from clipzoo.astro.simulate import SimulationConfig, simulate_samples

        if name not in self._cache:
            train, fitted = simulate_samples(SimulationConfig(n_per_class=self.n_per_class, seed=self.seed),
                                             self._given())
            test, _ = simulate_samples(SimulationConfig(n_per_class=self.test_per_class, seed=self.test_seed), fitted)
            self._cache.update(train=train, test=test)
        return self._cache[name]


@dataclass
class SimulatedSplit(Dataset):
    """One split (``train`` / ``test``) of a :class:`SimulatedSet`, as a benchmark dataset."""

    stars: SimulatedSet = field(default_factory=SimulatedSet)
    split: str = "test"

    def __post_init__(self) -> None:
        from clipzoo.astro.simulate import CLASSES

        self.classnames = list(CLASSES)
        self.name = f"astro-sim-{self.split}"

    def samples(self) -> Iterator[dict[str, Any]]:
        yield from self.stars.split(self.split)

    def __len__(self) -> int:
        return len(self.stars.split(self.split))

    def fingerprint(self) -> str:
        return hashlib.sha256(f"astro-sim-{self.split}-{self.stars.tag()}".encode()).hexdigest()[:16]


class _ModelStats:
    """Mixin of the simulated tasks: before scoring, the simulated set takes the model's feature statistics."""

    def score(self, embedder) -> M.ItemScores:
        for value in vars(self).values():
            if isinstance(value, SimulatedSplit):
                value.stars.bind(embedder.model.model.preprocess)
        return super().score(embedder)


@dataclass
class SimClassification(_ModelStats, NModalClassification):
    """Core's linear probes per modality and fused, on the simulated set."""


@dataclass
class SimPrototypes(_ModelStats, PrototypeClassification):
    """Class prototypes per modality and fused, on the simulated set."""


@dataclass
class SimRetrieval(_ModelStats, NModalRetrieval):
    """Core's N-modal retrieval on the simulated set's held-out stars."""
