"""Bootstrap intervals and chance levels of the benchmark metrics (``clipzoo.core.bench.metrics``).

The vectorised bootstrap is checked against a direct loop over the same resamples (same seed, the
metric recomputed from scratch on each resample, scikit-learn's balanced accuracy for mean per-class
recall): the intervals must be equal, not close. Embeddings and logits are seeded random arrays: what
is tested is arithmetic on them, not parsing.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from clipzoo.core.bench import metrics as M

RESAMPLES, SEED = 200, 7


def _percentiles(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def test_classification_bootstrap_equals_a_direct_loop():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    n, c = 37, 6
    labels = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[labels]  # better than chance, not perfect
    got = M.bootstrap_intervals(M.classification_scores(logits, labels), RESAMPLES, SEED)

    idx = np.random.default_rng(SEED).integers(0, n, size=(RESAMPLES, n))
    top1, top5, recall = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when a resample predicts a class it lacks
        for row in idx:
            order = np.argsort(-logits[row], axis=1, kind="stable")
            top1.append(float(np.mean(order[:, 0] == labels[row])))
            top5.append(float(np.mean([labels[row][i] in order[i, :5] for i in range(n)])))
            recall.append(float(balanced_accuracy_score(labels[row], logits[row].argmax(axis=1))))
    assert got["top1"] == _percentiles(top1)
    assert got["top5"] == _percentiles(top5)
    assert got["mean_per_class_recall"] == _percentiles(recall)
    assert got["top1"][0] < M.classification_metrics(logits, labels)["top1"] < got["top1"][1]
    # the seed decides the resamples
    assert (M.resample_indices(n, RESAMPLES, SEED) == idx).all()
    assert not (M.resample_indices(n, RESAMPLES, SEED + 1) == idx).all()


def test_retrieval_bootstrap_resamples_items_with_their_captions():
    rng = np.random.default_rng(1)
    n, d = 15, 8
    images = M.l2_normalize(rng.normal(size=(n, d)))
    owners = np.repeat(np.arange(n), rng.integers(1, 4, size=n))  # 1-3 captions per image
    texts = M.l2_normalize(images[owners] + 0.9 * rng.normal(size=(len(owners), d)))
    scores = M.retrieval_scores(images, texts, owners, ks=(1, 5))
    got = M.bootstrap_intervals(scores, RESAMPLES, SEED)

    sim = texts @ images.T  # the gallery stays whole: each query is ranked against every candidate
    t2i = {k: np.array([owners[j] in np.argsort(-sim[j], kind="stable")[:k] for j in range(len(owners))]) for k in (1, 5)}
    i2t = {k: np.array([np.isin(np.argsort(-sim[:, i], kind="stable")[:k], np.flatnonzero(owners == i)).any()
                        for i in range(n)]) for k in (1, 5)}
    idx = np.random.default_rng(SEED).integers(0, n, size=(RESAMPLES, n))
    loop: dict[str, list[float]] = {m: [] for m in scores.measured}
    for row in idx:
        captions = np.concatenate([np.flatnonzero(owners == i) for i in row])  # an item brings all its captions
        for k in (1, 5):
            loop[f"text2image_R{k}"].append(float(np.mean(t2i[k][captions])))
            loop[f"image2text_R{k}"].append(float(np.mean(i2t[k][row])))
        loop["mean_recall"].append(float(np.mean([loop[m][-1] for m in scores.averages["mean_recall"]])))
    for metric, values in loop.items():
        assert got[metric] == _percentiles(values), metric
    point = M.retrieval_metrics(images, texts, owners, ks=(1, 5))
    assert point["text2image_R1"] == float(np.mean(t2i[1])) and point["image2text_R5"] == float(np.mean(i2t[5]))


def test_chance_levels_by_task_kind():
    rng = np.random.default_rng(2)
    # classification (zero-shot, linear probe, GDA all score logits over C classes): k/C and 1/C
    logits, labels = rng.normal(size=(20, 7)), np.arange(20) % 7
    cls = M.classification_scores(logits, labels)
    assert cls.chance == {"top1": 1 / 7, "top5": 5 / 7, "mean_per_class_recall": 1 / 7}
    assert M.classification_scores(logits[:, :4], labels % 4).chance == {"top1": 0.25, "mean_per_class_recall": 0.25}
    probe = M.linear_probe_scores(rng.normal(size=(30, 4)), np.arange(30) % 3, rng.normal(size=(9, 4)), np.arange(9) % 3)
    assert probe.chance == {"top1": 1 / 3, "mean_per_class_recall": 1 / 3}
    # retrieval, one caption per image: k/N
    emb = M.l2_normalize(rng.normal(size=(12, 5)))
    one = M.retrieval_scores(emb, emb, np.arange(12), ks=(1, 5, 10))
    assert [one.chance[f"text2image_R{k}"] for k in (1, 5, 10)] == pytest.approx([1 / 12, 5 / 12, 10 / 12])
    assert [one.chance[f"image2text_R{k}"] for k in (1, 5, 10)] == pytest.approx([1 / 12, 5 / 12, 10 / 12])
    assert one.chance["mean_recall"] == pytest.approx(np.mean([1, 1, 5, 5, 10, 10]) / 12)
    # several captions per image: an image query with m positives among N captions, 1 - C(N-m,k)/C(N,k)
    owners = np.array([0, 0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])  # 15 captions; image 0 has 3, image 2 has 2
    many = M.retrieval_scores(emb, M.l2_normalize(rng.normal(size=(15, 5))), owners, ks=(1, 5))
    m = np.bincount(owners, minlength=12)
    for k in (1, 5):
        want = np.mean([1 - math.comb(15 - mi, k) / math.comb(15, k) for mi in m])
        assert many.chance[f"image2text_R{k}"] == pytest.approx(want, abs=1e-12)
        assert many.chance[f"text2image_R{k}"] == pytest.approx(k / 12)
    # k beyond the candidates: certain
    assert M.retrieval_scores(emb[:3], emb[:3], np.arange(3), ks=(5,)).chance["text2image_R5"] == 1.0


def test_a_random_scorer_lands_on_chance():
    """Chance is what a model that ignores its input scores: the mean over many random scorers matches it."""
    rng = np.random.default_rng(3)
    labels = np.arange(40) % 5
    owners = np.repeat(np.arange(20), 2)
    top1, r5 = [], []
    for _ in range(300):
        top1.append(M.classification_metrics(rng.normal(size=(40, 5)), labels)["top1"])
        r5.append(M.retrieval_metrics(rng.normal(size=(20, 4)), rng.normal(size=(40, 4)), owners, ks=(5,))["image2text_R5"])
    assert np.mean(top1) == pytest.approx(0.2, abs=0.01)
    chance = M.retrieval_scores(rng.normal(size=(20, 4)), rng.normal(size=(40, 4)), owners, ks=(5,)).chance["image2text_R5"]
    assert chance == pytest.approx(1 - math.comb(38, 5) / math.comb(40, 5))
    assert np.mean(r5) == pytest.approx(chance, abs=0.02)


def test_items_outside_a_subset_are_not_scored():
    """Scores over a subset of the test items (samples with the modality) leave the others out of the resamples."""
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(size=(6, 3)), np.array([0, 1, 2, 0, 1, 2])
    sub = M.classification_scores(logits, labels, items=np.array([1, 3, 4, 6, 7, 9]), n_items=10)
    assert sub.values() == M.classification_metrics(logits, labels)
    reps = M.replicates(sub, np.array([[0, 2, 5, 8, 0, 2, 5, 8, 0, 2]]))  # only unscored items: undefined
    assert np.isnan(reps["top1"][0]) and np.isnan(reps["mean_per_class_recall"][0])
    assert M.replicates(sub, np.array([[1, 1, 0, 0, 0, 0, 0, 0, 0, 0]]))["top1"][0] == float(logits[0].argmax() == 1)
