"""Astro benchmark tasks on core's task kinds (AstroM³'s evaluations).

Registered names (options in brackets; shard folders come from ``clipzoo ingest astro ...``):

- ``astro/sim-classification`` [n_per_class, seed, test_seed, test_per_class, stats]: variable-star
  classification on the seeded simulated set by linear probe from each modality and from their fusion
  (core ``NModalClassification``);
- ``astro/sim-prototypes`` [same]: the same by class prototypes (nearest class mean, cosine), each
  modality and fused (:class:`PrototypeClassification`);
- ``astro/sim-retrieval`` [test_per_class, test_seed, stats]: light curve <-> spectrum <-> metadata
  recalls on held-out simulated stars (core ``NModalRetrieval``);
- ``astro/classification``, ``astro/prototypes`` [train, test]: the same on labelled shard folders;
- ``astro/retrieval`` [shards]: cross-modal recalls on a (cross-match) shard folder.

The simulated sets are generated once per task in memory; metadata standardisation uses ``stats`` (a
manifest.json or feature_stats JSON, e.g. the training ingest's) when given, else the training split's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

MODALITIES = ("lightcurve", "spectrum", "metadata")


def _core():
    from clipzoo.core.bench import tasks

    return tasks


@dataclass
class PrototypeClassification:
    """Nearest class prototype (mean of the L2-normalised training embeddings, cosine) per modality and
    fused (mean of a sample's present normalised embeddings, as core's ``NModalClassification``)."""

    train: Any
    test: Any
    modalities: Sequence[str] = MODALITIES
    kind: ClassVar[str] = "prototype_classification"
    primary: ClassVar[str] = "fused_top1"

    def _embed(self, embedder, dataset):
        import numpy as np

        embs = {m: embedder.samples(dataset, m) for m in self.modalities}
        stack = np.stack([e.emb * e.present[:, None] for e in embs.values()])
        count = np.stack([e.present for e in embs.values()]).sum(axis=0)
        fused = stack.sum(axis=0) / np.maximum(count, 1)[:, None]
        return embs, fused, count > 0

    def evaluate(self, embedder) -> dict[str, float]:
        from clipzoo.astro.evaluate import prototype_accuracy

        tr_embs, tr_fused, tr_any = self._embed(embedder, self.train)
        te_embs, te_fused, te_any = self._embed(embedder, self.test)
        out: dict[str, float] = {}
        for m in self.modalities:
            a, b = tr_embs[m], te_embs[m]
            ka, kb = a.present & (a.labels >= 0), b.present & (b.labels >= 0)
            if ka.sum() == 0 or kb.sum() == 0:
                continue
            out[f"{m}_top1"] = prototype_accuracy(a.emb[ka], a.labels[ka], b.emb[kb], b.labels[kb])
        labels_tr, labels_te = tr_embs[self.modalities[0]].labels, te_embs[self.modalities[0]].labels
        ka, kb = tr_any & (labels_tr >= 0), te_any & (labels_te >= 0)
        out["fused_top1"] = prototype_accuracy(tr_fused[ka], labels_tr[ka], te_fused[kb], labels_te[kb])
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "primary": self.primary, "modalities": list(self.modalities),
                "train": {"name": self.train.name, "fingerprint": self.train.fingerprint()},
                "test": {"name": self.test.name, "fingerprint": self.test.fingerprint()}}


def _sim_datasets(n_per_class: int = 100, seed: int = 0, test_per_class: int = 40, test_seed: int = 1,
                  stats: str | None = None):
    from clipzoo.astro.catalogs import FeatureStats
    from clipzoo.astro.simulate import CLASSES, SimulationConfig, simulate_samples
    from clipzoo.core.bench.datasets import SampleList

    cache: dict[str, list] = {}
    given = FeatureStats.load(stats) if stats else None

    def make(split: str):
        if not cache:
            train, fitted = simulate_samples(SimulationConfig(n_per_class=n_per_class, seed=seed), given)
            test, _ = simulate_samples(SimulationConfig(n_per_class=test_per_class, seed=test_seed), fitted)
            cache.update(train=train, test=test)
        return cache[split]

    tag = f"n{n_per_class}-s{seed}-t{test_per_class}-ts{test_seed}-{stats or 'fit'}"
    train = SampleList(name=f"astro-sim-train-{tag}", key=f"astro-sim-train-{tag}", make=lambda: make("train"),
                       classnames=list(CLASSES))
    test = SampleList(name=f"astro-sim-test-{tag}", key=f"astro-sim-test-{tag}", make=lambda: make("test"),
                      classnames=list(CLASSES))
    return train, test


def sim_classification(**options):
    """Variable-star class by linear probe on each modality's and the fused embeddings (simulated stars)."""
    train, test = _sim_datasets(**options)
    return _core().NModalClassification(train=train, test=test, modalities=MODALITIES)


def sim_prototypes(**options):
    """Variable-star class by nearest class prototype, per modality and fused (simulated stars)."""
    train, test = _sim_datasets(**options)
    return PrototypeClassification(train=train, test=test)


def sim_retrieval(test_per_class: int = 40, test_seed: int = 1, stats: str | None = None, **options):
    """Light curve <-> spectrum <-> metadata retrieval recalls on held-out simulated stars."""
    _, test = _sim_datasets(test_per_class=test_per_class, test_seed=test_seed, stats=stats, **options)
    return _core().NModalRetrieval(dataset=test, modalities=MODALITIES)


def _shards(path: str, task: str, option: str):
    from clipzoo.core.bench.datasets import ShardFolder

    if not path:
        raise ValueError(f"{task}: no shard folder given; pass it as: clipzoo bench MODEL --task {task} --set {option}=DIR")
    return ShardFolder(folder=path)


def shard_classification(train: str = "", test: str = ""):
    """Linear probe per modality and fused on labelled shard folders (``train=DIR``, ``test=DIR``)."""
    return _core().NModalClassification(train=_shards(train, "astro/classification", "train"),
                                        test=_shards(test, "astro/classification", "test"), modalities=MODALITIES)


def shard_prototypes(train: str = "", test: str = ""):
    """Class prototypes per modality and fused on labelled shard folders (``train=DIR``, ``test=DIR``)."""
    return PrototypeClassification(train=_shards(train, "astro/prototypes", "train"),
                                   test=_shards(test, "astro/prototypes", "test"))


def shard_retrieval(shards: str = ""):
    """Cross-modal retrieval recalls on an ingested tri-modal shard folder (``shards=DIR``)."""
    return _core().NModalRetrieval(dataset=_shards(shards, "astro/retrieval", "shards"), modalities=MODALITIES)


TASKS = {
    "astro/sim-classification": sim_classification,
    "astro/sim-prototypes": sim_prototypes,
    "astro/sim-retrieval": sim_retrieval,
    "astro/classification": shard_classification,
    "astro/prototypes": shard_prototypes,
    "astro/retrieval": shard_retrieval,
}
