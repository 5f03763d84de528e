"""Every astro benchmark task reports per-item scores: chance levels and bootstrap intervals (issue 15).

The embedder is a stand-in with seeded embeddings over the real simulated set (what is tested is the scoring
arithmetic, as in tests/core/test_bench_intervals.py): an informative one (a class direction plus noise,
light curves of every third star missing) for the interval check against a direct numpy bootstrap, and one
whose embeddings ignore the star for the chance check.
"""

from __future__ import annotations

import re
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from clipzoo.core.bench.cache import SampleEmbeddings
from clipzoo.core.bench.harness import score_task

RESAMPLES, SEED = 200, 11
DIM = 16
SIM = {"n_per_class": 12, "seed": 0, "test_per_class": 8, "test_seed": 1}


class StandInEmbedder:
    """``samples(dataset, modality)`` like core's Embedder: seeded embeddings, presence from the sample masks."""

    def __init__(self, informative: bool, preprocess: dict | None = None):
        self.informative = informative
        self.model = SimpleNamespace(model=SimpleNamespace(preprocess=preprocess or {}))
        directions = np.random.default_rng(0).normal(size=(5, DIM))
        self.directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)

    def samples(self, dataset, modality: str) -> SampleEmbeddings:
        emb, present, labels = [], [], []
        for i, sample in enumerate(dataset.samples()):
            rng = np.random.default_rng(zlib.crc32(f"{sample['__key__']}/{modality}".encode()))
            label = int(sample.get("cls", -1))
            vec = rng.normal(size=DIM) + (2.0 * self.directions[label] if self.informative else 0.0)
            emb.append(vec / np.linalg.norm(vec))
            has = bool(np.asarray(sample[f"{modality}_mask.npy"]).any())
            present.append(has and not (self.informative and modality == "lightcurve" and i % 3 == 0))
            labels.append(label)
        return SampleEmbeddings(np.asarray(emb, np.float32), np.asarray(present), np.asarray(labels))


def _task(name: str, **options):
    from clipzoo.core.plugins import get_registry

    return get_registry().task(name)(**options)


def _percentiles(values) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _direct_prototype_hits(train_x, train_y, test_x, test_y) -> np.ndarray:
    protos = np.stack([train_x[train_y == c].mean(axis=0) for c in range(5)])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    test_x = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    return (np.argmax(test_x @ protos.T, axis=1) == test_y).astype(float)


def test_prototype_intervals_equal_a_direct_bootstrap():
    task = _task("astro/sim-prototypes", **SIM)
    embedder = StandInEmbedder(informative=True)
    entry = score_task(task, embedder, resamples=RESAMPLES, seed=SEED)
    assert "note" not in entry
    assert entry["chance"]["fused_top1"] == entry["chance"]["lightcurve_top1"] == pytest.approx(1 / 5)

    def fused(dataset):
        parts = {m: embedder.samples(dataset, m) for m in ("lightcurve", "spectrum", "metadata")}
        total = sum(p.emb * p.present[:, None] for p in parts.values())
        count = sum(p.present.astype(int) for p in parts.values())
        mean = total / np.maximum(count, 1)[:, None]
        return mean / np.linalg.norm(mean, axis=1, keepdims=True).clip(1e-12), count > 0, parts["metadata"].labels

    (xa, pa, ya), (xb, pb, yb) = fused(task.train), fused(task.test)
    n = len(yb)
    idx = np.random.default_rng(SEED).integers(0, n, size=(RESAMPLES, n))
    hits = np.zeros(n)
    hits[pb] = _direct_prototype_hits(xa[pa], ya[pa], xb[pb], yb[pb])
    assert entry["metrics"]["fused_top1"] == pytest.approx(hits[pb].mean())
    assert entry["interval"]["fused_top1"] == _percentiles([hits[row].sum() / pb[row].sum() for row in idx])

    # one modality is scored on the test stars that have it: a resample counts only those
    lc_train, lc_test = embedder.samples(task.train, "lightcurve"), embedder.samples(task.test, "lightcurve")
    scored = lc_test.present
    assert 0 < scored.sum() < n
    lc_hits = np.zeros(n)
    lc_hits[scored] = _direct_prototype_hits(lc_train.emb[lc_train.present], lc_train.labels[lc_train.present],
                                             lc_test.emb[scored], lc_test.labels[scored])
    assert entry["interval"]["lightcurve_top1"] == _percentiles([lc_hits[row].sum() / scored[row].sum() for row in idx])
    assert entry["interval"]["fused_top1"][0] < entry["metrics"]["fused_top1"] < entry["interval"]["fused_top1"][1]


def test_a_wrong_embedder_scores_at_chance():
    task = _task("astro/sim-prototypes", n_per_class=40, seed=0, test_per_class=40, test_seed=1)
    entry = score_task(task, StandInEmbedder(informative=False), resamples=RESAMPLES, seed=SEED)
    for metric in ("fused_top1", "spectrum_top1", "metadata_top1"):
        low, high = entry["interval"][metric]
        assert entry["chance"][metric] == pytest.approx(0.2)
        assert low <= entry["chance"][metric] <= high, (metric, entry["metrics"][metric])
    informed = score_task(_task("astro/sim-prototypes", n_per_class=40, seed=0, test_per_class=40, test_seed=1),
                          StandInEmbedder(informative=True), resamples=RESAMPLES, seed=SEED)
    assert informed["interval"]["fused_top1"][0] > 0.2  # the same task separates an informative embedder


def test_every_astro_task_reports_chance_and_intervals(tmp_path):
    import argparse

    from clipzoo.astro.sources.simulated import SimulatedSource
    from clipzoo.core.ingest import run_ingest

    for name, seed in (("train", 0), ("test", 1)):
        run_ingest(SimulatedSource(argparse.Namespace(n_per_class=6, seed=seed)), [], tmp_path / name, progress=False)
    tasks = {
        "astro/sim-classification": SIM, "astro/sim-prototypes": SIM,
        "astro/sim-retrieval": {"test_per_class": 8, "test_seed": 1},
        "astro/classification": {"train": str(tmp_path / "train"), "test": str(tmp_path / "test")},
        "astro/prototypes": {"train": str(tmp_path / "train"), "test": str(tmp_path / "test")},
        "astro/retrieval": {"shards": str(tmp_path / "test")},
    }
    for name, options in tasks.items():
        task = _task(name, **options)
        entry = score_task(task, StandInEmbedder(informative=True), resamples=50, seed=SEED)
        primary = entry["primary"]
        assert "note" not in entry, name
        assert set(entry["interval"]) == set(entry["chance"]) and primary in entry["interval"], name
        low, high = entry["interval"][primary]
        assert low <= entry["metrics"][primary] <= high, name
        if primary == "fused_top1":  # one of the 5 classes
            assert entry["chance"][primary] == pytest.approx(0.2) and entry["chance_rule"][primary] == "1/classes (1/5)"
        else:  # retrieval: the mean of its recalls, and so of their chance levels
            parts = [m for m in entry["chance"] if re.search(r"_R(1|5|10)$", m)]
            assert parts, (name, sorted(entry["chance"]))
            assert entry["chance"][primary] == pytest.approx(np.mean([entry["chance"][m] for m in parts])), name
