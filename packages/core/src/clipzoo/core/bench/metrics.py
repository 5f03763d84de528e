"""Metrics on frozen embeddings: plain numpy (and scikit-learn for the linear probe).

Every function takes L2-normalised embeddings as ``float32`` arrays ``[N, D]`` and returns a dict of
plain floats, so the same code scores any model (and is tested against clip_benchmark and a direct
numpy implementation of GDA). Conventions follow clip_benchmark: zero-shot logits are
``100 * image @ classifier``; retrieval recall@k is 1 for a query when at least one of its positives is
among the top k.
"""

from __future__ import annotations

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


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``top1``, ``top5`` (only with at least 5 classes) and ``mean_per_class_recall``."""
    labels = np.asarray(labels)
    metrics = {"top1": topk_accuracy(logits, labels, 1)}
    if logits.shape[1] >= 5:
        metrics["top5"] = topk_accuracy(logits, labels, 5)
    metrics["mean_per_class_recall"] = mean_per_class_recall(logits.argmax(axis=1), labels)
    return metrics


def zeroshot_classification(image_emb: np.ndarray, classifier: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return classification_metrics(LOGIT_SCALE * image_emb @ classifier, labels)


def _recall_at_k(scores: np.ndarray, positives: np.ndarray, k: int) -> float:
    """Fraction of query rows with at least one positive column among their top ``k`` scores."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hit = np.take_along_axis(positives, top, axis=1).any(axis=1)
    return float(hit.mean())


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
    a, b = names
    scores = np.asarray(query_b, dtype=np.float32) @ np.asarray(query_a, dtype=np.float32).T  # [Nb, Na]
    positives = np.zeros(scores.shape, dtype=bool)
    positives[np.arange(len(b_to_a)), np.asarray(b_to_a)] = True
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"{b}2{a}_R{k}"] = _recall_at_k(scores, positives, k)
        metrics[f"{a}2{b}_R{k}"] = _recall_at_k(scores.T, positives.T, k)
    metrics["mean_recall"] = float(np.mean(list(metrics.values())))
    return metrics


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
    return classification_metrics(scores, np.asarray(test_labels))


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
