"""Contrastive losses with one signature, so the trainer treats them alike.

``loss(features: {modality: [B, D] normalized}, logit_scale, logit_bias=None, masks=None) -> Tensor``

- :class:`ClipLoss`: InfoNCE (image->text and text->image cross entropy) between two modalities;
  features gathered from all ranks WITH gradient (:func:`gather_features`).
- :class:`SigLipLoss`: pairwise sigmoid loss (Zhai et al. 2023) against every rank's features.
- :class:`PairwiseLoss`: the sum of CLIP losses over modality pairs (AstroM³); rows where either
  modality of a pair is absent (``masks``) are left out of that pair.

``logit_scale`` is the multiplier (``exp`` of the learnable parameter), as ``ContrastiveModel.forward``
returns it. Under DDP each rank's loss gradient, averaged over ranks, equals the gradient of the loss
over the whole global batch (the tests check this with two gloo processes).
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` along dim 0 whose gradient is the sum over ranks of each rank's own slice (reduce-scatter).

    This is what ``torch.distributed.nn.functional.all_gather`` computes, written out because its autograd node
    keeps the process group alive after ``destroy_process_group`` (torch 2.14; the functional-collectives
    replacement does too). Gloo's worker threads then outlive the group, free a tensor while the interpreter shuts
    down, and the process dies of SIGABRT after its work is done: a failed run to its launcher.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        out = tensor.new_empty((world * tensor.shape[0], *tensor.shape[1:]))
        dist.all_gather_single(out, tensor.contiguous())
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        mine = grad.new_empty((grad.shape[0] // world, *grad.shape[1:]))
        dist.reduce_scatter_single(mine, grad.contiguous())
        return mine


def gather_features(
    tensors: Sequence[torch.Tensor], rank: int, world_size: int, with_grad: bool = True
) -> list[torch.Tensor]:
    """Concatenate each tensor across ranks (rank order). Gradients flow back to each rank's own slice."""
    if world_size == 1:
        return list(tensors)
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"world_size={world_size} but torch.distributed is not initialized")
    out = []
    for tensor in tensors:
        if with_grad and tensor.requires_grad:
            out.append(_GatherWithGrad.apply(tensor))
        else:
            parts = [torch.empty_like(tensor) for _ in range(world_size)]
            dist.all_gather(parts, tensor.detach().contiguous())
            if tensor.requires_grad:  # keep the local slice differentiable (open_clip's non-grad gather)
                parts[rank] = tensor
            out.append(torch.cat(parts, dim=0))
    return out


def _present(masks: Mapping[str, torch.Tensor] | None, modality: str, like: torch.Tensor) -> torch.Tensor:
    if masks is None or modality not in masks:
        return torch.ones(like.shape[0], dtype=torch.bool, device=like.device)
    return masks[modality].to(device=like.device, dtype=torch.bool).reshape(-1)


def _both_present(masks: Mapping[str, torch.Tensor] | None, features: Mapping[str, torch.Tensor], a: str, b: str) -> torch.Tensor:
    """Rows where modalities ``a`` and ``b`` are both present: only those take part in a pair's loss."""
    return _present(masks, a, features[a]) & _present(masks, b, features[b])


def _two_modalities(features: Mapping[str, torch.Tensor], modalities: Sequence[str] | None) -> tuple[str, str]:
    if modalities is not None:
        a, b = modalities
    elif len(features) == 2:
        a, b = list(features)
    else:
        raise ValueError(
            f"this loss compares two modalities, but features has {sorted(features)}: "
            "set 'modalities' in the loss config, or use type 'pairwise'"
        )
    missing = [m for m in (a, b) if m not in features]
    if missing:
        raise KeyError(f"loss needs modalities {missing} that the batch did not provide ({sorted(features)})")
    return a, b


class ClipLoss(nn.Module):
    """Symmetric InfoNCE over a (gathered) batch.

    ``local_loss=True`` scores only this rank's rows against all gathered columns (less memory, same
    gradient under DDP); otherwise every rank computes the loss of the whole global batch.
    """

    def __init__(
        self,
        local_loss: bool = False,
        gather_with_grad: bool = True,
        rank: int = 0,
        world_size: int = 1,
        modalities: Sequence[str] | None = None,
    ):
        super().__init__()
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad
        self.rank, self.world_size = rank, world_size
        self.modalities = tuple(modalities) if modalities is not None else None

    def pair_loss(
        self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """InfoNCE between rows of ``a`` and ``b`` (matching rows are positives); ``valid`` excludes rows."""
        if valid is None:
            valid = torch.ones(a.shape[0], dtype=torch.bool, device=a.device)
        local_n = a.shape[0]
        all_a, all_b = gather_features([a, b], self.rank, self.world_size, self.gather_with_grad)
        (all_valid,) = gather_features([valid], self.rank, self.world_size, with_grad=False)
        if self.local_loss and self.world_size > 1:
            rows_a, rows_b, row_valid = a, b, valid
            labels = torch.arange(local_n, device=a.device) + self.rank * local_n
        else:
            rows_a, rows_b, row_valid = all_a, all_b, all_valid
            labels = torch.arange(all_a.shape[0], device=a.device)
        if not bool(row_valid.any()):
            return (a.sum() + b.sum()) * 0.0  # nothing to compare: a zero that keeps the graph
        column_penalty = torch.zeros(all_valid.shape, dtype=a.dtype, device=a.device)
        column_penalty[~all_valid] = float("-inf")
        logits_a = logit_scale * rows_a @ all_b.T + column_penalty
        logits_b = logit_scale * rows_b @ all_a.T + column_penalty
        loss_a = F.cross_entropy(logits_a[row_valid], labels[row_valid])
        loss_b = F.cross_entropy(logits_b[row_valid], labels[row_valid])
        return (loss_a + loss_b) / 2

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        masks: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        a, b = _two_modalities(features, self.modalities)
        return self.pair_loss(features[a], features[b], logit_scale, _both_present(masks, features, a, b))


class SigLipLoss(nn.Module):
    """Sigmoid loss: every (row, column) pair is a binary match/no-match decision.

    This rank's rows of the first modality are scored against the second modality's features of all
    ranks; the sum is divided by the local batch size (as open_clip's SigLipLoss).
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        gather_with_grad: bool = True,
        modalities: Sequence[str] | None = None,
    ):
        super().__init__()
        self.rank, self.world_size, self.gather_with_grad = rank, world_size, gather_with_grad
        self.modalities = tuple(modalities) if modalities is not None else None

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        masks: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if logit_bias is None:
            raise ValueError("SigLIP needs a logit bias: set 'init_logit_bias' (e.g. -10) in the model config")
        a_name, b_name = _two_modalities(features, self.modalities)
        a, b = features[a_name], features[b_name]
        # as in the CLIP loss, a sample takes part only when both of its modalities are present
        valid = _both_present(masks, features, a_name, b_name)
        (all_b,) = gather_features([b], self.rank, self.world_size, self.gather_with_grad)
        (all_valid,) = gather_features([valid], self.rank, self.world_size, with_grad=False)
        n = a.shape[0]
        logits = logit_scale * a @ all_b.T + logit_bias
        labels = -torch.ones_like(logits)
        columns = torch.arange(n, device=a.device) + self.rank * n
        labels[torch.arange(n, device=a.device), columns] = 1.0
        weight = (valid[:, None] & all_valid[None, :]).to(logits.dtype)
        return -(F.logsigmoid(labels * logits) * weight).sum() / n


class PairwiseLoss(nn.Module):
    """Sum of CLIP losses over pairs of modalities (all pairs by default), each over rows with both present."""

    def __init__(
        self,
        pairs: Sequence[Sequence[str]] | None = None,
        weights: Sequence[float] | None = None,
        local_loss: bool = False,
        gather_with_grad: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__()
        self.pairs = [tuple(p) for p in pairs] if pairs is not None else None
        if weights is not None and (self.pairs is None or len(weights) != len(self.pairs)):
            raise ValueError("pairwise loss 'weights' needs explicit 'pairs' of the same length")
        self.weights = list(weights) if weights is not None else None
        self.clip = ClipLoss(local_loss=local_loss, gather_with_grad=gather_with_grad, rank=rank, world_size=world_size)

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        masks: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        pairs = self.pairs if self.pairs is not None else list(itertools.combinations(features, 2))
        if not pairs:
            raise ValueError(f"pairwise loss needs at least two modalities, got {sorted(features)}")
        weights = self.weights or [1.0] * len(pairs)
        total = None
        for (a, b), weight in zip(pairs, weights):
            if a not in features or b not in features:
                raise KeyError(f"pairwise loss pair ({a}, {b}) not in batch features {sorted(features)}")
            valid = _both_present(masks, features, a, b)
            term = weight * self.clip.pair_loss(features[a], features[b], logit_scale, valid)
            total = term if total is None else total + term
        return total


LOSSES: dict[str, type[nn.Module]] = {"clip": ClipLoss, "siglip": SigLipLoss, "pairwise": PairwiseLoss}


def create_loss(cfg: Mapping[str, Any] | None, rank: int = 0, world_size: int = 1) -> nn.Module:
    """The loss named by ``cfg["type"]`` (default ``"clip"``), other keys passed as arguments."""
    cfg = dict(cfg or {})
    kind = cfg.pop("type", "clip")
    try:
        cls = LOSSES[kind]
    except KeyError:
        raise ValueError(f"unknown loss type {kind!r}; choose one of {', '.join(LOSSES)}") from None
    try:
        return cls(rank=rank, world_size=world_size, **cfg)
    except TypeError as exc:
        raise ValueError(f"bad options for loss {kind!r}: {exc}") from None
