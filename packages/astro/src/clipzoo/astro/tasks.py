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

Every task gives per-item scores, so the harness reports each metric with its chance level and a
bootstrap interval. The simulated sets are generated once per task in memory. Their metadata is
standardised with ``stats`` (a manifest.json or feature_stats JSON) when it is given, else with the
feature statistics the model carries in ``preprocess["metadata"]["feature_stats"]`` (put there at
training time from the training shards' manifest), else with statistics fitted on the training split.
"""

from __future__ import annotations

from typing import Any

MODALITIES = ("lightcurve", "spectrum", "metadata")


def _sim_splits(n_per_class: int = 100, seed: int = 0, test_per_class: int = 40, test_seed: int = 1,
                stats: str | None = None) -> tuple[Any, Any]:
    from clipzoo.astro.bench import SimulatedSet, SimulatedSplit
    from clipzoo.astro.catalogs import FeatureStats
    from clipzoo.core.bench.datasets import DatasetError

    if stats:
        try:
            FeatureStats.load(stats)  # a bad path or file is one line now, not a traceback mid-benchmark
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"stats={stats}: {exc}") from None
    stars = SimulatedSet(n_per_class, seed, test_per_class, test_seed, str(stats) if stats else None)
    return SimulatedSplit(stars=stars, split="train"), SimulatedSplit(stars=stars, split="test")


def sim_classification(n_per_class: int = 100, seed: int = 0, test_per_class: int = 40, test_seed: int = 1,
                       stats: str | None = None):
    """Variable-star class by linear probe on each modality's and the fused embeddings (simulated stars)."""
    from clipzoo.astro.bench import SimClassification

    train, test = _sim_splits(n_per_class, seed, test_per_class, test_seed, stats)
    return SimClassification(train=train, test=test, modalities=MODALITIES)


def sim_prototypes(n_per_class: int = 100, seed: int = 0, test_per_class: int = 40, test_seed: int = 1,
                   stats: str | None = None):
    """Variable-star class by nearest class prototype, per modality and fused (simulated stars)."""
    from clipzoo.astro.bench import SimPrototypes

    train, test = _sim_splits(n_per_class, seed, test_per_class, test_seed, stats)
    return SimPrototypes(train=train, test=test, modalities=MODALITIES)


def sim_retrieval(test_per_class: int = 40, test_seed: int = 1, stats: str | None = None, **options):
    """Light curve <-> spectrum <-> metadata retrieval recalls on held-out simulated stars."""
    from clipzoo.astro.bench import SimRetrieval

    _, test = _sim_splits(test_per_class=test_per_class, test_seed=test_seed, stats=stats, **options)
    return SimRetrieval(dataset=test, modalities=MODALITIES)


def _shards(path: str, task: str, option: str):
    from clipzoo.core.bench.datasets import ShardFolder

    if not path:
        raise ValueError(f"{task}: no shard folder given; pass it as: clipzoo bench MODEL --task {task} --set {option}=DIR")
    return ShardFolder(folder=path)


def shard_classification(train: str = "", test: str = ""):
    """Linear probe per modality and fused on labelled shard folders (``train=DIR``, ``test=DIR``)."""
    from clipzoo.core.bench.tasks import NModalClassification

    return NModalClassification(train=_shards(train, "astro/classification", "train"),
                                test=_shards(test, "astro/classification", "test"), modalities=MODALITIES)


def shard_prototypes(train: str = "", test: str = ""):
    """Class prototypes per modality and fused on labelled shard folders (``train=DIR``, ``test=DIR``)."""
    from clipzoo.astro.bench import PrototypeClassification

    return PrototypeClassification(train=_shards(train, "astro/prototypes", "train"),
                                   test=_shards(test, "astro/prototypes", "test"), modalities=MODALITIES)


def shard_retrieval(shards: str = ""):
    """Cross-modal retrieval recalls on an ingested tri-modal shard folder (``shards=DIR``)."""
    from clipzoo.core.bench.tasks import NModalRetrieval

    return NModalRetrieval(dataset=_shards(shards, "astro/retrieval", "shards"), modalities=MODALITIES)


TASKS = {
    "astro/sim-classification": sim_classification,
    "astro/sim-prototypes": sim_prototypes,
    "astro/sim-retrieval": sim_retrieval,
    "astro/classification": shard_classification,
    "astro/prototypes": shard_prototypes,
    "astro/retrieval": shard_retrieval,
}
