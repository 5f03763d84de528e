"""Embeddings, variable-star classification and cross-modal retrieval for tri-modal astro models.

- :func:`embed_samples`: per-modality L2-normalised embeddings and presence masks of shard-format samples;
- :func:`classification_report`: linear probe (logistic regression) and class prototypes (nearest class
  mean by cosine) from each modality alone and from their combination (concatenated normalised
  embeddings, an absent modality contributing zeros), trained on one split and scored on another;
- :func:`retrieval_recalls`: recall@k for every ordered pair of modalities (rows with both present);
- :func:`train_contrastive`: a compact CPU training loop over core's model and ``PairwiseLoss``, used by
  the AstroM³ proof on the simulated set.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

MODALITIES = ("lightcurve", "spectrum", "metadata")


def stack_samples(samples: Sequence[dict[str, Any]], modalities: Sequence[str] = MODALITIES) -> dict[str, Any]:
    """Samples (decoded shard dicts with ``<m>.npy`` / ``<m>_mask.npy`` / ``cls``) -> stacked numpy arrays."""
    out: dict[str, Any] = {}
    for m in modalities:
        out[m] = np.stack([np.asarray(s[f"{m}.npy"], np.float32) for s in samples])
        out[f"{m}_mask"] = np.stack([np.asarray(s[f"{m}_mask.npy"], bool) for s in samples])
    out["cls"] = np.array([int(s["cls"]) if s.get("cls") is not None else -1 for s in samples])
    return out


def embed_arrays(model, arrays: dict[str, Any], batch_size: int = 256
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Normalised embeddings ``{m: [N, D]}`` and presence ``{m: [N]}`` for every modality the model has."""
    import torch

    model.eval()
    feats: dict[str, list] = {m: [] for m in model.modalities if m in arrays}
    n = len(arrays["cls"])
    with torch.no_grad():
        for start in range(0, n, batch_size):
            for m in feats:
                x = torch.from_numpy(arrays[m][start : start + batch_size])
                mask = torch.from_numpy(arrays[f"{m}_mask"][start : start + batch_size])
                feats[m].append(model.encode(m, x, mask).numpy())
    present = {m: arrays[f"{m}_mask"].reshape(n, -1).any(1) for m in feats}
    return {m: np.concatenate(v) for m, v in feats.items()}, present


def embed_samples(model, samples: Sequence[dict[str, Any]], batch_size: int = 256):
    return embed_arrays(model, stack_samples(samples, [m for m in MODALITIES if m in model.modalities]), batch_size)


def _combined(feats: dict[str, np.ndarray], present: dict[str, np.ndarray], modalities: Sequence[str]) -> np.ndarray:
    return np.concatenate([feats[m] * present[m][:, None] for m in modalities], axis=1)


def linear_probe_accuracy(x_train, y_train, x_test, y_test, *, c: float = 1.0, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
    clf.fit(x_train, y_train)
    return float((clf.predict(x_test) == y_test).mean())


def prototype_accuracy(x_train, y_train, x_test, y_test) -> float:
    """Nearest class mean (cosine) of L2-normalised features."""
    classes = np.unique(y_train)
    protos = np.stack([x_train[y_train == c].mean(0) for c in classes])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True).clip(1e-12)
    xt = x_test / np.linalg.norm(x_test, axis=1, keepdims=True).clip(1e-12)
    return float((classes[np.argmax(xt @ protos.T, axis=1)] == y_test).mean())


def classification_report(train: tuple[dict, dict, np.ndarray], test: tuple[dict, dict, np.ndarray],
                          modalities: Sequence[str] = MODALITIES) -> dict[str, dict[str, float]]:
    """``{"linear_probe": {m: acc, "combined": acc}, "prototype": {...}}``; a single modality is scored on
    the test stars that have it, the combination on all test stars."""
    (f_tr, p_tr, y_tr), (f_te, p_te, y_te) = train, test
    out: dict[str, dict[str, float]] = {"linear_probe": {}, "prototype": {}, "n_test": {}}
    for m in modalities:
        tr, te = p_tr[m] & (y_tr >= 0), p_te[m] & (y_te >= 0)
        out["linear_probe"][m] = linear_probe_accuracy(f_tr[m][tr], y_tr[tr], f_te[m][te], y_te[te])
        out["prototype"][m] = prototype_accuracy(f_tr[m][tr], y_tr[tr], f_te[m][te], y_te[te])
        out["n_test"][m] = int(te.sum())
    x_tr, x_te = _combined(f_tr, p_tr, modalities), _combined(f_te, p_te, modalities)
    tr, te = y_tr >= 0, y_te >= 0
    out["linear_probe"]["combined"] = linear_probe_accuracy(x_tr[tr], y_tr[tr], x_te[te], y_te[te])
    out["prototype"]["combined"] = prototype_accuracy(x_tr[tr], y_tr[tr], x_te[te], y_te[te])
    out["n_test"]["combined"] = int(te.sum())
    return out


def retrieval_recalls(feats: dict[str, np.ndarray], present: dict[str, np.ndarray], ks: Sequence[int] = (1, 5),
                      modalities: Sequence[str] = MODALITIES) -> dict[str, float]:
    """``{"lightcurve->spectrum/R@1": ...}`` over rows that have both modalities."""
    out: dict[str, float] = {}
    for a, b in itertools.permutations(modalities, 2):
        rows = present[a] & present[b]
        if rows.sum() < 2:
            continue
        sims = feats[a][rows] @ feats[b][rows].T
        rank = (sims > np.diag(sims)[:, None]).sum(1)  # how many candidates beat the true partner
        for k in ks:
            out[f"{a}->{b}/R@{k}"] = float((rank < k).mean())
    return out


def train_contrastive(model, arrays: dict[str, Any], *, steps: int = 300, batch_size: int = 128, lr: float = 2e-3,
                      weight_decay: float = 0.05, seed: int = 0, loss_cfg: dict[str, Any] | None = None,
                      time_limit_s: float | None = None) -> list[float]:
    """Compact CPU loop: AdamW with cosine decay, random batches, core's loss from the model config.

    Stops early after ``time_limit_s`` seconds (logged) so a proof run stays bounded on a busy machine.
    """
    import time

    import torch

    from clipzoo.core.losses import create_loss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    loss_fn = create_loss(loss_cfg or model.config.get("loss", {"type": "pairwise"}))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "cls"}
    n = len(arrays["cls"])
    losses: list[float] = []
    start = time.monotonic()
    model.train()
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(n, size=min(batch_size, n), replace=False))
        batch = {k: v[idx] for k, v in tensors.items()}
        out = model(batch)
        loss = loss_fn(out["features"], out["logit_scale"], out["logit_bias"], out["masks"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            log.info("step %d/%d loss %.4f", step, steps, losses[-1])
        if time_limit_s is not None and time.monotonic() - start > time_limit_s:
            log.warning("training stopped at step %d/%d: time limit %.0f s reached", step + 1, steps, time_limit_s)
            break
    model.eval()
    return losses
