"""Tower factories registered by type: ``factory(embed_dim, **cfg) -> nn.Module``.

A tower's ``forward(x, mask=None)`` returns ``Tensor[B, embed_dim]`` (unnormalized). Core's types:

- ``open_clip_vision``: open_clip ViT (``vision_cfg`` keys), ``in_channels`` for multispectral input;
- ``open_clip_text``: open_clip text transformer (``text_cfg`` keys);
- ``hf_text``: a Hugging Face encoder from a local folder (``path``), optionally LiT-locked;
- ``sequence_transformer``: 1-D sequences ``[B, L, C]`` with ``[B, L]`` masks (light curves);
- ``conv1d``: spectra ``[B, L, C]``;
- ``mlp``: tabular features ``[B, F]`` with a missing-value mask.

This module is imported by the plugin registration, so it imports torch only inside the factories.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

#: keys clipzoo adds to open_clip's vision/text configs; they are handled here, not by open_clip
VISION_EXTRA_KEYS = ("in_channels", "lock", "unlocked_groups", "freeze_bn_stats")
TEXT_EXTRA_KEYS = ("lock", "unlocked_layers", "freeze_layer_norm", "hf_config")


def open_clip_vision(embed_dim: int, *, quick_gelu: bool = False, **cfg: Any):
    """An open_clip vision tower; ``in_channels`` != 3 swaps the patch embedding for an N-band one."""
    from open_clip.model import _build_vision_tower

    extra = {k: cfg.pop(k) for k in VISION_EXTRA_KEYS if k in cfg}
    tower = _build_vision_tower(embed_dim, cfg, quick_gelu=quick_gelu)
    return finish_vision_tower(tower, **extra)


def finish_vision_tower(
    tower, in_channels: int = 3, lock: bool = False, unlocked_groups: int = 0, freeze_bn_stats: bool = False
):
    """Apply clipzoo's vision options (input channels, LiT locking) to a built open_clip vision tower."""
    from torch import nn

    if in_channels != 3:
        conv = getattr(tower, "conv1", None)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(
                f"in_channels={in_channels} is supported for open_clip ViT towers only (patch-embedding conv1); "
                f"this tower is a {type(tower).__name__}"
            )
        tower.conv1 = nn.Conv2d(
            in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
        )
    tower.in_channels = in_channels
    if lock:
        tower.lock(unlocked_groups=unlocked_groups, freeze_bn_stats=freeze_bn_stats)
    return tower


def open_clip_text(embed_dim: int, *, quick_gelu: bool = False, **cfg: Any):
    """An open_clip text tower (its own transformer, or ``hf_model_name`` for a local Hugging Face model)."""
    from open_clip.model import _build_text_tower

    extra = {k: cfg.pop(k) for k in TEXT_EXTRA_KEYS if k in cfg}
    if cfg.get("hf_model_name"):
        return hf_text(embed_dim, **_hf_kwargs(cfg), **extra)
    tower = _build_text_tower(embed_dim, cfg, quick_gelu=quick_gelu)
    return finish_text_tower(tower, **{k: v for k, v in extra.items() if k != "hf_config"})


def _hf_kwargs(text_cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": text_cfg["hf_model_name"],
        "pooler_type": text_cfg.get("hf_pooler_type"),
        "proj_type": text_cfg.get("hf_proj_type"),
        "pretrained": text_cfg.get("hf_model_pretrained", True),
    }


def hf_text(
    embed_dim: int,
    *,
    path: str,
    pooler_type: str | None = "mean_pooler",
    proj_type: str | None = "mlp",
    pretrained: bool = True,
    hf_config: dict[str, Any] | None = None,
    lock: bool = False,
    unlocked_layers: int = 0,
    freeze_layer_norm: bool = True,
    **ignored: Any,
):
    """open_clip's Hugging Face text encoder built from a LOCAL folder (nothing is downloaded).

    ``hf_config`` (a transformers config dict, as :func:`save_pretrained` stores it) builds the
    architecture without the folder; the weights then come from the saved model.
    """
    from open_clip.hf_model import HFTextEncoder

    with _quiet_transformers():
        tower = _build_hf_text(HFTextEncoder, embed_dim, path, pooler_type, proj_type, pretrained, hf_config)
    return finish_text_tower(tower, lock=lock, unlocked_layers=unlocked_layers, freeze_layer_norm=freeze_layer_norm)


@contextlib.contextmanager
def _quiet_transformers():
    """transformers prints a load report (the unused BERT pooler) and a progress bar per model: keep logs readable."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _build_hf_text(HFTextEncoder, embed_dim, path, pooler_type, proj_type, pretrained, hf_config):
    if hf_config is not None:
        from transformers import AutoConfig

        config = AutoConfig.for_model(**hf_config)
        tower = HFTextEncoder(path, output_dim=embed_dim, config=config, pooler_type=pooler_type, proj_type=proj_type)
        if pooler_type != "cls_pooler" and getattr(tower.transformer, "pooler", None) is not None:
            tower.transformer.pooler = None  # as built from the folder: no pooling layer unless cls-pooled
    else:
        from clipzoo.core.models.local import resolve_local_model

        local = resolve_local_model(path)
        tower = HFTextEncoder(
            str(local), output_dim=embed_dim, pooler_type=pooler_type, proj_type=proj_type, pretrained=pretrained
        )
    return tower


def finish_text_tower(tower, lock: bool = False, unlocked_layers: int = 0, freeze_layer_norm: bool = True):
    """LiT locking: freeze the text tower except its last ``unlocked_layers`` layers (the projection stays trainable).

    ``freeze_layer_norm=False`` leaves the LayerNorms of the frozen part trainable (open_clip's option).
    """
    if not lock:
        return tower
    transformer = getattr(tower, "transformer", None)
    if transformer is None or not hasattr(transformer, "config"):  # open_clip's own text transformer
        with contextlib.redirect_stdout(io.StringIO()):
            tower.lock(unlocked_layers=unlocked_layers, freeze_layer_norm=freeze_layer_norm)
        return tower
    # a Hugging Face encoder: open_clip's lock() needs a per-architecture table (BERT lacks it), so find the layers
    unlocked: set[str] = set()
    if unlocked_layers:
        layers = _hf_layers(transformer)
        if unlocked_layers > len(layers):
            raise ValueError(f"unlocked_layers={unlocked_layers} but the text model has only {len(layers)} layers")
        unlocked = {id(p) for layer in layers[len(layers) - unlocked_layers:] for p in layer.parameters()}
    for name, param in transformer.named_parameters():
        is_norm = any("layernorm" in part.lower() or part.lower().startswith("ln") for part in name.split("."))
        param.requires_grad = id(param) in unlocked or (is_norm and not freeze_layer_norm)
    return tower


def _hf_layers(transformer):
    from torch import nn

    encoder = getattr(transformer, "encoder", transformer)
    for attr in ("layer", "layers", "block", "h"):
        layers = getattr(encoder, attr, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(f"cannot find the layer list of {type(transformer).__name__} to unlock its last layers")


def sequence_transformer(embed_dim: int, **cfg: Any):
    from clipzoo.core.models.encoders import SequenceTransformer

    return SequenceTransformer(embed_dim, **cfg)


def conv1d(embed_dim: int, **cfg: Any):
    from clipzoo.core.models.encoders import Conv1dEncoder

    return Conv1dEncoder(embed_dim, **cfg)


def mlp(embed_dim: int, **cfg: Any):
    from clipzoo.core.models.encoders import MLPEncoder

    return MLPEncoder(embed_dim, **cfg)


BUILTIN_TOWERS = {
    "open_clip_vision": open_clip_vision,
    "open_clip_text": open_clip_text,
    "hf_text": hf_text,
    "sequence_transformer": sequence_transformer,
    "conv1d": conv1d,
    "mlp": mlp,
}


def register_builtin_towers(registry) -> None:
    """Register core's tower types on a :class:`clipzoo.core.plugins.PluginRegistry` (idempotent)."""
    for type_name, factory in BUILTIN_TOWERS.items():
        registry.add_tower(type_name, factory)
