"""Encoders for non-image modalities: 1-D sequences, spectra and tabular features.

Every encoder follows the tower contract: ``forward(x, mask=None) -> Tensor[B, embed_dim]``
(unnormalized), where ``mask`` is True at valid positions. A row whose mask is all False (the modality
is absent for that sample) still yields a finite vector; the losses leave such rows out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` counting only positions where ``mask`` is True (0 for an all-False row)."""
    if mask is None:
        return x.mean(dim)
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim) / weights.sum(dim).clamp_min(1.0)


def _sequence_input(x: torch.Tensor, mask: torch.Tensor | None, in_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, L]`` or ``[B, L, C]`` input plus ``[B, L]`` mask -> zero-filled ``[B, L, C]`` and a bool mask."""
    if x.dim() == 2 and in_channels == 1:
        x = x.unsqueeze(-1)
    if x.dim() != 3 or x.shape[-1] != in_channels:
        raise ValueError(f"expected a sequence [batch, length, {in_channels}], got shape {tuple(x.shape)}")
    if mask is None:
        mask = torch.isfinite(x).all(-1)
    mask = mask.to(torch.bool)
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match sequence shape {tuple(x.shape[:2])}")
    x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x, mask


class SequenceTransformer(nn.Module):
    """Transformer over a 1-D sequence ``[B, L, C]`` (light curves, time series) with masked pooling.

    ``pool="mean"`` averages the valid positions; ``pool="cls"`` reads a learned class token.
    """

    def __init__(
        self,
        embed_dim: int,
        in_channels: int,
        width: int = 128,
        layers: int = 2,
        heads: int = 4,
        max_len: int = 512,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        pool: str = "mean",
    ):
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ValueError(f"sequence_transformer pool must be 'mean' or 'cls', not {pool!r}")
        self.in_channels, self.max_len, self.pool = in_channels, max_len, pool
        self.input_proj = nn.Linear(in_channels, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if pool == "cls" else None
        self.positional_embedding = nn.Parameter(torch.randn(max_len + (pool == "cls"), width) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width, heads, int(width * mlp_ratio), dropout, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(layers)
        )
        self.ln_final = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, mask = _sequence_input(x, mask, self.in_channels)
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence of length {x.shape[1]} exceeds this tower's max_len={self.max_len}")
        h = self.input_proj(x)
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        h = h + self.positional_embedding[: h.shape[1]]
        # An absent row (all False) would make every attention weight NaN: let it attend to position 0.
        attend = mask.clone()
        attend[:, 0] |= ~mask.any(1)
        padding = ~attend
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                h = checkpoint(block, h, None, padding, use_reentrant=False)
            else:
                h = block(h, src_key_padding_mask=padding)
        h = self.ln_final(h)
        pooled = h[:, 0] if self.cls_token is not None else masked_mean(h, mask)
        return self.proj(pooled)


class Conv1dEncoder(nn.Module):
    """1-D CNN for spectra ``[B, L, C]``: a stem, then ``depth`` stride-2 blocks, then masked mean pooling."""

    def __init__(
        self,
        embed_dim: int,
        in_channels: int = 1,
        width: int = 64,
        depth: int = 4,
        kernel_size: int = 7,
        length: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"conv1d kernel_size must be odd, got {kernel_size}")
        self.in_channels, self.length = in_channels, length
        self.stem = nn.Conv1d(in_channels, width, kernel_size, padding=kernel_size // 2)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.GroupNorm(min(8, width), width),
                nn.GELU(),
                nn.Conv1d(width, width, kernel_size, stride=2, padding=kernel_size // 2),
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, mask = _sequence_input(x, mask, self.in_channels)
        h = self.stem(x.transpose(1, 2))  # [B, width, L]
        m = mask.unsqueeze(1).to(h.dtype)
        for block in self.blocks:
            h = block(h * m)
            # a downsampled position is valid when any input position under it was
            m = F.max_pool1d(m, kernel_size=2, stride=2, ceil_mode=True)[..., : h.shape[-1]]
        pooled = masked_mean(h.transpose(1, 2), m.squeeze(1) > 0)
        return self.proj(self.dropout(self.norm(pooled)))


class MLPEncoder(nn.Module):
    """MLP for tabular features ``[B, F]`` with missing values: zero-filled, and the mask fed as extra inputs."""

    def __init__(
        self, embed_dim: int, in_features: int, hidden: list[int] | tuple[int, ...] = (128,), dropout: float = 0.0
    ):
        super().__init__()
        self.in_features = in_features
        layers: list[nn.Module] = []
        width = 2 * in_features  # values and their validity mask
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LayerNorm(size), nn.GELU(), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected features [batch, {self.in_features}], got shape {tuple(x.shape)}")
        mask = torch.isfinite(x) if mask is None else mask.to(torch.bool) & torch.isfinite(x)
        x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
        return self.proj(self.body(torch.cat([x, mask.to(x.dtype)], dim=1)))
