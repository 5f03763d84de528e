"""Metrics on frozen embeddings: plain numpy (and scikit-learn for the linear probe).

Every function takes L2-normalised embeddings as ``float32`` arrays ``[N, D]`` and returns a dict of
plain floats, so the same code scores any model (and is tested against clip_benchmark and a direct
numpy implementation of GDA). Conventions follow clip_benchmark: zero-shot logits are
``100 * image @ classifier``; retrieval recall@k is 1 for a query when at least one of its positives is
among the top k.

Each ``*_metrics`` function has an ``*_scores`` twin returning :class:`ItemScores`: the same metrics kept as
per-test-item statistics, with each metric's chance level, so :func:`bootstrap_intervals` can recompute
every metric on resamples of the test items (a percentile bootstrap; the classifier, the prompts and the
gallery stay fixed, only which test items are scored is resampled).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LOGIT_SCALE = 100.0
RECALL_KS = (1, 5, 10)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def zeroshot_classifier(template_embeddings: np.ndarray) -> np.ndarray:
    """Class weights ``[D, C]`` from prompt embeddings ``[C, T, D]``: normalise, average templates, normalise."""
    per_prompt = l2_normalize(template_embeddings)
    return l2_normalize(per_prompt.mean(axis=1)).T


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest logits (ties broken by lower index)."""
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((order == labels[:, None]).any(axis=1).mean())


def mean_per_class_recall(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Recall averaged over the classes present in ``labels`` (scikit-learn's balanced accuracy)."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(labels, predictions))


# -- per-item scores, chance levels and the bootstrap ------------------------------------------------
@dataclass
class ItemScores:
    """A task's metrics as per-test-item statistics, so every metric can be recomputed on a resample.

    Test items are indexed ``0 .. n_items-1`` (a dataset's samples). Three forms cover every task kind:

    - ``ratios[m] = (num, den)``: ``m = sum(num) / sum(den)`` over the items (top-k accuracy: hit / 1; a
      caption-query recall: the hits of an item's captions / its caption count, so an item's captions
      are resampled together);
    - ``balanced[m] = (hit, label)``: recall averaged over the classes present (label ``-1``: not scored);
    - ``averages[m] = (m1, m2, ...)``: the mean of other metrics (``mean_recall``).

    ``chance[m]`` is what a model whose scores ignore the input gets in expectation; ``chance_rule[m]``
    says how it was obtained. ``info`` holds numbers reported as they are (a chosen alpha). ``counts`` are
    facts about the test data (pairs scored, shots drawn): they describe the task, so they are reported with
    it (the leaderboard's "n=..."), never as a metric with a chance level and an interval.
    """

    n_items: int
    ratios: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    balanced: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    averages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    chance: dict[str, float] = field(default_factory=dict)
    chance_rule: dict[str, str] = field(default_factory=dict)
    info: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # output order of the metrics (info included, counts not)

    def add_ratio(self, name: str, num: np.ndarray, den: np.ndarray, chance: float, rule: str) -> None:
        self.ratios[name] = (np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
        self._note(name, chance, rule)

    def add_balanced(self, name: str, hit: np.ndarray, label: np.ndarray, chance: float, rule: str) -> None:
        self.balanced[name] = (np.asarray(hit, dtype=np.float64), np.asarray(label, dtype=np.int64))
        self._note(name, chance, rule)

    def add_average(self, name: str, parts: list[str] | tuple[str, ...]) -> None:
        parts = tuple(parts)
        self.averages[name] = parts
        self._note(name, float(np.mean([self.chance[p] for p in parts])), "mean of its parts' chance levels")

    def add_info(self, name: str, value: float) -> None:
        self.info[name] = float(value)
        self.order.append(name)

    def add_count(self, name: str, value: int) -> None:
        """A count describing the scored data (``image_location_pairs``); not a metric, not in :meth:`values`."""
        self.counts[name] = int(value)

    def _note(self, name: str, chance: float, rule: str) -> None:
        self.chance[name] = float(chance)
        self.chance_rule[name] = rule
        self.order.append(name)

    def support(self, name: str) -> int:
        """How many test items metric ``name`` rests on: items with a denominator (ratios), a scored label
        (balanced), the least of its parts (averages). A pair metric scored on 5 of 40 items rests on 5."""
        if name in self.ratios:
            return int(np.count_nonzero(self.ratios[name][1] > 0))
        if name in self.balanced:
            return int(np.count_nonzero(self.balanced[name][1] >= 0))
        if name in self.averages:
            return min(self.support(part) for part in self.averages[name])
        return self.n_items

    @property
    def measured(self) -> list[str]:
        """The metrics with a chance level and an interval (everything but ``info``)."""
        return [m for m in self.order if m not in self.info]

    def values(self) -> dict[str, float]:
        """The point value of every metric (the identity resample), in ``order``."""
        reps = replicates(self, np.arange(self.n_items)[None, :])
        return {m: (self.info[m] if m in self.info else float(reps[m][0])) for m in self.order}

    def prefixed(self, prefix: str) -> "ItemScores":
        """The same scores with every metric name prefixed (``image_`` for one modality of a fused task)."""
        out = ItemScores(self.n_items)
        for m in self.order:
            if m in self.ratios:
                out.add_ratio(prefix + m, *self.ratios[m], self.chance[m], self.chance_rule[m])
            elif m in self.balanced:
                out.add_balanced(prefix + m, *self.balanced[m], self.chance[m], self.chance_rule[m])
            elif m in self.averages:
                out.averages[prefix + m] = tuple(prefix + p for p in self.averages[m])
                out._note(prefix + m, self.chance[m], self.chance_rule[m])
            else:
                out.add_info(prefix + m, self.info[m])
        out.counts = {prefix + k: v for k, v in self.counts.items()}
        return out

    def update(self, other: "ItemScores") -> None:
        """Add ``other``'s metrics (scored on the same test items)."""
        if other.n_items != self.n_items:
            raise ValueError(f"scores over {other.n_items} items cannot join scores over {self.n_items}")
        self.ratios.update(other.ratios)
        self.balanced.update(other.balanced)
        self.averages.update(other.averages)
        self.chance.update(other.chance)
        self.chance_rule.update(other.chance_rule)
        self.info.update(other.info)
        self.counts.update(other.counts)
        self.order += [m for m in other.order if m not in self.order]


def resample_indices(n_items: int, resamples: int, seed: int) -> np.ndarray:
    """``[resamples, n_items]`` test-item indices drawn with replacement (numpy's PCG64, ``seed``)."""
    if n_items < 1:
        raise ValueError("cannot bootstrap over zero test items")
    return np.random.default_rng(seed).integers(0, n_items, size=(resamples, n_items))


def replicates(scores: ItemScores, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Every measured metric on each row of resample indices ``idx`` ``[B, N]``: ``{metric: [B]}``.

    Vectorised over the resamples; a resample where a metric is undefined (no caption query, no
    labelled item) gives ``nan`` for it.
    """
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for m, (num, den) in scores.ratios.items():
            out[m] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
        for m, (hit, label) in scores.balanced.items():
            out[m] = _balanced_replicates(hit[idx], label[idx])
        for m, parts in scores.averages.items():
            out[m] = np.mean(np.stack([out[p] for p in parts]), axis=0)
    return out


def _balanced_replicates(hit: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Mean per-class recall of each row (classes present in the row; ``label < 0`` ignored)."""
    rows, n = label.shape
    n_classes = int(label.max()) + 1 if label.size and label.max() >= 0 else 0
    if n_classes == 0:
        return np.full(rows, np.nan)
    valid = label >= 0
    cell = (np.arange(rows)[:, None] * n_classes + label)[valid]
    counts = np.bincount(cell, minlength=rows * n_classes).reshape(rows, n_classes)
    hits = np.bincount(cell, weights=hit[valid], minlength=rows * n_classes).reshape(rows, n_classes)
    present = counts > 0
    recall = np.where(present, hits / np.maximum(counts, 1), 0.0)
    return recall.sum(axis=1) / present.sum(axis=1)


def bootstrap_intervals(scores: ItemScores, resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval ``(low, high)`` of every measured metric over the test items."""
    reps = replicates(scores, resample_indices(scores.n_items, resamples, seed))
    tail = round(100.0 * (1.0 - level) / 2.0, 9)  # 2.5 exactly for 0.95 (1 - 0.95 is not 0.05 in binary)
    out = {}
    for m in scores.measured:
        r = reps[m][np.isfinite(reps[m])]
        out[m] = (float(np.percentile(r, tail)), float(np.percentile(r, 100.0 - tail))) if len(r) else (np.nan, np.nan)
    return out


def _hits_at_k(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return (order == labels[:, None]).any(axis=1)


def classification_scores(logits: np.ndarray, labels: np.ndarray, *, items: np.ndarray | None = None,
                          n_items: int | None = None) -> ItemScores:
    """Per-item ``top1``, ``top5`` (with at least 5 classes) and ``mean_per_class_recall``.

    Row ``i`` of ``logits`` is test item ``items[i]`` (default ``i``) of ``n_items``. Chance for a
    prediction that ignores the input: ``k / C`` for top-k and ``1 / C`` for mean per-class recall,
    ``C`` the number of classes the classifier chooses among (``logits.shape[1]``).
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    items = np.arange(len(labels)) if items is None else np.asarray(items)
    n_items = len(labels) if n_items is None else n_items
    n_classes = logits.shape[1]
    scores = ItemScores(n_items)
    den = np.zeros(n_items)
    den[items] = 1.0
    for k in (1, 5) if n_classes >= 5 else (1,):
        num = np.zeros(n_items)
        num[items] = _hits_at_k(logits, labels, k)
        scores.add_ratio(f"top{k}", num, den, k / n_classes, f"{k}/classes ({k}/{n_classes})")
    hit = np.zeros(n_items)
    hit[items] = logits.argmax(axis=1) == labels
    label = np.full(n_items, -1, dtype=np.int64)
    label[items] = labels
    scores.add_balanced("mean_per_class_recall", hit, label, 1.0 / n_classes, f"1/classes (1/{n_classes})")
    return scores


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``top1``, ``top5`` (only with at least 5 classes) and ``mean_per_class_recall``."""
    return classification_scores(logits, labels).values()


def zeroshot_classification(image_emb: np.ndarray, classifier: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return classification_metrics(LOGIT_SCALE * image_emb @ classifier, labels)


def _query_hits(scores: np.ndarray, positives: np.ndarray, k: int) -> np.ndarray:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(positives, top, axis=1).any(axis=1)


def _chance_at_k(n_candidates: int, n_positive: np.ndarray, k: int) -> float:
    """Mean over queries of P(a random ranking of ``n_candidates`` puts one of a query's positives in the top k).

    ``1 - C(N - m, k) / C(N, k)`` for ``m`` positives; ``k / N`` with one positive.
    """
    k = min(k, n_candidates)
    miss = np.ones(len(n_positive))
    for j in range(k):
        miss *= np.clip((n_candidates - n_positive - j) / (n_candidates - j), 0.0, None)
    return float(np.mean(1.0 - miss))


def retrieval_scores(
    query_a: np.ndarray,
    query_b: np.ndarray,
    b_to_a: np.ndarray,
    *,
    names: tuple[str, str] = ("image", "text"),
    ks: tuple[int, ...] = RECALL_KS,
    items: np.ndarray | None = None,
    n_items: int | None = None,
    with_mean: bool = True,
) -> ItemScores:
    """Per-item recall@k both ways between ``a`` ``[Na, D]`` and ``b`` ``[Nb, D]`` (see :func:`retrieval_metrics`).

    ``a`` row ``i`` is test item ``items[i]`` (default ``i``) of ``n_items``; a ``b`` row belongs to
    the item of its ``a``, so a resample takes an item together with all its captions. Chance:
    ``k / Na`` for ``b`` queries (one positive each) and ``1 - C(Nb - m, k) / C(Nb, k)`` for an ``a``
    query with ``m`` positives, averaged over the queries.
    """
    a, b = names
    b_to_a = np.asarray(b_to_a, dtype=np.int64)
    sim = np.asarray(query_b, dtype=np.float32) @ np.asarray(query_a, dtype=np.float32).T  # [Nb, Na]
    n_b, n_a = sim.shape
    items = np.arange(n_a) if items is None else np.asarray(items, dtype=np.int64)
    n_items = n_a if n_items is None else n_items
    positives = np.zeros(sim.shape, dtype=bool)
    positives[np.arange(n_b), b_to_a] = True
    per_a = positives.sum(axis=0)  # positives of each a query
    a_den = np.zeros(n_items)
    a_den[items] = 1.0
    b_den = np.bincount(items[b_to_a], minlength=n_items).astype(np.float64)
    scores = ItemScores(n_items)
    parts = []
    for k in ks:
        b_num = np.bincount(items[b_to_a], weights=_query_hits(sim, positives, k), minlength=n_items)
        scores.add_ratio(f"{b}2{a}_R{k}", b_num, b_den, _chance_at_k(n_a, np.ones(n_b), k),
                         f"k/N: {min(k, n_a)}/{n_a} candidates")
        a_num = np.zeros(n_items)
        a_num[items] = _query_hits(sim.T, positives.T, k)
        scores.add_ratio(f"{a}2{b}_R{k}", a_num, a_den, _chance_at_k(n_b, per_a, k),
                         f"1-C(N-m,k)/C(N,k): {n_b} candidates, m positives per query")
        parts += [f"{b}2{a}_R{k}", f"{a}2{b}_R{k}"]
    if with_mean:
        scores.add_average("mean_recall", parts)
    return scores


def retrieval_metrics(
    query_a: np.ndarray,
    query_b: np.ndarray,
    b_to_a: np.ndarray,
    *,
    names: tuple[str, str] = ("image", "text"),
    ks: tuple[int, ...] = RECALL_KS,
) -> dict[str, float]:
    """Recall@k both ways between items ``a`` ``[Na, D]`` and ``b`` ``[Nb, D]`` plus their mean.

    ``b_to_a[j]`` is the index of the ``a`` item that ``b`` item ``j`` belongs to (several captions per
    image: several ``b`` rows share one ``a``). Keys: ``{a}2{b}_R{k}`` (query ``a``, retrieve ``b``),
    ``{b}2{a}_R{k}`` and ``mean_recall`` (mean over all of them). With ``a=image, b=text``,
    ``text2image_R{k}`` is clip_benchmark's ``image_retrieval_recall@k``.
    """
    return retrieval_scores(query_a, query_b, b_to_a, names=names, ks=ks).values()


# -- linear probe -------------------------------------------------------------------------------------
def linear_probe(
    train_emb: np.ndarray,
    train_labels: np.ndarray,
    test_emb: np.ndarray,
    test_labels: np.ndarray,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Logistic regression (scikit-learn, lbfgs) fitted on frozen train embeddings, scored on test."""
    return linear_probe_scores(train_emb, train_labels, test_emb, test_labels, C=C, max_iter=max_iter, seed=seed).values()


def linear_probe_scores(
    train_emb: np.ndarray,
    train_labels: np.ndarray,
    test_emb: np.ndarray,
    test_labels: np.ndarray,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
    items: np.ndarray | None = None,
    n_items: int | None = None,
) -> ItemScores:
    """:func:`linear_probe` as per-test-item scores (the fitted probe stays fixed under resampling)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    clf.fit(train_emb, train_labels)
    # decision_function columns follow clf.classes_; map them back onto the full label range
    n_classes = int(max(np.max(train_labels), np.max(test_labels))) + 1
    scores = np.full((len(test_emb), n_classes), -np.inf, dtype=np.float64)
    decision = clf.decision_function(test_emb)
    if decision.ndim == 1:  # binary: sklearn returns the positive class's score only
        decision = np.stack([-decision, decision], axis=1)
    scores[:, clf.classes_] = decision
    return classification_scores(scores, np.asarray(test_labels), items=items, n_items=n_items)


# -- GDA few-shot (Wang et al., ICLR 2024) -------------------------------------------------------------
GDA_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def gda_fit(shot_emb: np.ndarray, shot_labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear classifier ``(W [D, C], b [C])`` of Gaussian discriminant analysis on few-shot embeddings.

    Class means from the shots; one covariance shared by all classes, estimated from the
    class-centred shots and inverted with the shrinkage of "A Hard-to-Beat Baseline for Training-free
    CLIP-based Adaptation": ``Sigma^-1 = D * pinv((N - 1) S + tr(S) I)``. Equal class priors.
    """
    x = np.asarray(shot_emb, dtype=np.float64)
    y = np.asarray(shot_labels)
    missing = sorted(set(range(n_classes)) - set(y.tolist()))
    if missing:
        raise ValueError(f"GDA needs at least one shot of every class; classes without shots: {missing}")
    means = np.stack([x[y == c].mean(axis=0) for c in range(n_classes)])
    centred = np.concatenate([x[y == c] - means[c] for c in range(n_classes)])
    n, d = centred.shape
    cov = np.cov(centred, rowvar=False) if n > 1 else np.zeros((d, d))
    precision = d * np.linalg.pinv((n - 1) * cov + np.trace(cov) * np.eye(d))
    weights = precision @ means.T  # [D, C]
    bias = np.log(np.full(n_classes, 1.0 / n_classes)) - 0.5 * np.einsum("cd,de,ce->c", means, precision, means)
    return weights, bias


def gda_logits(
    emb: np.ndarray, classifier: np.ndarray, weights: np.ndarray, bias: np.ndarray, alpha: float
) -> np.ndarray:
    """Zero-shot logits ensembled with the GDA logits: ``100 x @ T + alpha (x @ W + b)``."""
    emb = np.asarray(emb, dtype=np.float64)
    return LOGIT_SCALE * emb @ classifier + alpha * (emb @ weights + bias)


def gda_select_alpha(
    val_emb: np.ndarray, val_labels: np.ndarray, classifier: np.ndarray, weights: np.ndarray, bias: np.ndarray,
    alphas: tuple[float, ...] = GDA_ALPHAS,
) -> float:
    """The ensemble weight with the best top-1 on a validation set (first best wins, as in the paper's code)."""
    best_alpha, best_acc = alphas[0], -1.0
    for alpha in alphas:
        acc = topk_accuracy(gda_logits(val_emb, classifier, weights, bias, alpha), np.asarray(val_labels), 1)
        if acc > best_acc:
            best_alpha, best_acc = alpha, acc
    return best_alpha
