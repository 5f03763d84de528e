"""Decoded webdataset sample -> model batch entry, driven by ``model.preprocess``.

``SampleTransform(model.preprocess, train=True, seed=0)(sample)`` returns
``{"image": FloatTensor[C, H, W], "text": LongTensor[L], "<name>": FloatTensor, "<name>_mask": BoolTensor,
"cls": LongTensor[] (when the sample has one), "__key__": str}`` (see docs/ARCHITECTURE.md "Model batch").

Array functions do the work (``image_to_tensor``, ``resize_crop``, ``fit_length``); the transform is the
dict wrapper that finds each modality's field, as MONAI pairs array and dictionary transforms. Random
choices (caption, crop, array window) come from an RNG seeded by ``(seed, epoch, key)``, so a sample is
transformed the same way on any worker and after a resume.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from clipzoo.core.data.formats import ARRAY_EXTENSIONS, IMAGE_EXTENSIONS

CAPTION_FIELDS = ("captions.json", "txt")
# Community shards (img2dataset, LAION, DataComp, BIOMEDICA) name the image member by its encoding alone
# (KEY.jpg); clipzoo's own older shards name it by modality (KEY.image.png). Both are read, in this order.
COMMUNITY_IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")


class SampleError(ValueError):
    """A sample that cannot become a batch entry; the message names the sample key and the field."""


class MissingFieldError(SampleError):
    """A sample without any member a modality can read (``names``); ``members`` are the ones it has."""

    def __init__(self, message: str, modality: str, names: Sequence[str], members: Sequence[str]):
        super().__init__(message)
        self.modality, self.names, self.members = modality, list(names), list(members)

    def __reduce__(self):  # picklable with its fields (DataLoader workers)
        return (type(self), (str(self), self.modality, self.names, self.members))


# -- array functions --------------------------------------------------------------------------
def image_to_tensor(image: Any, channels: int) -> torch.Tensor:
    """PIL image, uint8 ``HxWxC``/``HxW`` array or float ``CxHxW`` array -> float ``[C, H, W]``.

    8-bit values are scaled to 0..1 (16-bit PIL images by 1/65535); float arrays are kept as they are.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / integer / float greyscale
            array = np.asarray(image, dtype=np.float32) / (65535.0 if image.mode.startswith("I;16") else 1.0)
            tensor = torch.from_numpy(array.copy())[None]
        else:
            mode = {1: "L", 3: "RGB"}.get(channels)
            if mode is None:
                raise ValueError(f"a PIL image cannot give {channels} channels; store multispectral data as image.npy")
            tensor = torch.from_numpy(np.asarray(image.convert(mode), dtype=np.uint8).copy())
            tensor = (tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)).float() / 255.0
    else:
        array = np.asarray(image)
        if array.dtype == np.uint8:
            tensor = torch.from_numpy(array.astype(np.float32) / 255.0)
            tensor = tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)  # uint8 arrays are HxWxC
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            tensor = tensor[None] if tensor.dim() == 2 else tensor  # float arrays are CxHxW
    if tensor.dim() != 3:
        raise ValueError(f"image must be 2-D or 3-D, got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 1 and channels == 3:
        tensor = tensor.expand(3, -1, -1)
    if tensor.shape[0] != channels:
        raise ValueError(f"image has {tensor.shape[0]} channels, the model expects {channels}")
    return tensor.contiguous()


def _mode(interpolation: str):
    from torchvision.transforms import InterpolationMode

    try:
        return {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
                "nearest": InterpolationMode.NEAREST}[interpolation]
    except KeyError:
        raise ValueError(f"unknown interpolation {interpolation!r}; use bicubic, bilinear or nearest") from None


def _size_of(image: Any) -> tuple[int, int]:
    return (image.height, image.width) if hasattr(image, "height") else tuple(image.shape[-2:])


def resize_crop(
    image: Any,
    size: Sequence[int],
    *,
    interpolation: str = "bicubic",
    resize_mode: str = "shortest",
    crop_scale: Sequence[float] | None = None,
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    rng: random.Random | None = None,
) -> Any:
    """Resize a PIL image or ``[C, H, W]`` tensor to ``size`` with torchvision's ops.

    With ``crop_scale`` and ``rng``: a random resized crop (torchvision's sampling, our RNG). Otherwise
    open_clip's eval geometry: ``shortest`` side + centre crop, ``squash``, or ``longest`` side + pad.
    """
    from torchvision.transforms.v2 import functional as TF

    out_h, out_w = int(size[0]), int(size[1])
    mode = _mode(interpolation)
    h, w = _size_of(image)
    if crop_scale is not None and rng is not None:
        area = h * w
        for _ in range(10):  # torchvision's RandomResizedCrop.get_params, drawn from our RNG
            target = area * rng.uniform(*crop_scale)
            aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
                return TF.resized_crop(image, top, left, ch, cw, [out_h, out_w], interpolation=mode, antialias=True)
        # as torchvision: fall back to the eval geometry
    if resize_mode == "squash":
        return TF.resize(image, [out_h, out_w], interpolation=mode, antialias=True)
    if resize_mode == "longest":
        scale = min(out_h / h, out_w / w)
        new_size = [max(1, round(h * scale)), max(1, round(w * scale))]
        image = TF.resize(image, new_size, interpolation=mode, antialias=True)
        return TF.center_crop(image, [out_h, out_w])  # pads with zeros where the image is smaller
    if resize_mode != "shortest":
        raise ValueError(f"unknown resize_mode {resize_mode!r}; use shortest, squash or longest")
    if out_h == out_w:
        image = TF.resize(image, out_h, interpolation=mode, antialias=True)  # shorter side -> out_h
    else:
        scale = max(out_h / h, out_w / w)
        new_size = [max(out_h, round(h * scale)), max(out_w, round(w * scale))]
        image = TF.resize(image, new_size, interpolation=mode, antialias=True)
    return TF.center_crop(image, [out_h, out_w])


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std``; NaN (e.g. nodata pixels) becomes 0, the channel mean."""
    mean_t = torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
    if mean_t.shape[0] != image.shape[0] or std_t.shape[0] != image.shape[0]:
        raise ValueError(f"mean/std have {mean_t.shape[0]}/{std_t.shape[0]} values for {image.shape[0]} channels")
    return torch.nan_to_num((image - mean_t) / std_t, nan=0.0)


def fit_length(
    array: torch.Tensor, mask: torch.Tensor, length: int | None, rng: random.Random | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop (a random window with ``rng``, else the start) or zero-pad the first axis to ``length``."""
    if length is None or array.shape[0] == length:
        return array, mask
    if array.shape[0] > length:
        start = rng.randint(0, array.shape[0] - length) if rng is not None else 0
        return array[start : start + length], mask[start : start + length]
    pad = length - array.shape[0]
    array = torch.cat([array, array.new_zeros((pad, *array.shape[1:]))])
    mask = torch.cat([mask, mask.new_zeros((pad, *mask.shape[1:]))])
    return array, mask


def choose_caption(value: Any, rng: random.Random | None) -> str:
    """One caption from a ``txt`` string or a ``captions.json`` list: sampled with ``rng``, else the first."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        return value
    captions = [c["text"] if isinstance(c, Mapping) else str(c) for c in value]
    if not captions:
        raise ValueError("captions.json holds no captions")
    return captions[rng.randrange(len(captions))] if rng is not None else captions[0]


def _is_pil(value: Any) -> bool:
    from PIL import Image

    return isinstance(value, Image.Image)


# -- the dict wrapper -------------------------------------------------------------------------
def _stable_seed(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SampleTransform:
    """Decoded sample -> ``{modality: tensor, "<name>_mask": ..., "__key__": ...}`` for ``model.preprocess``."""

    def __init__(self, preprocess: Mapping[str, Mapping[str, Any]], train: bool, seed: int | None = None):
        self.preprocess = {m: dict(spec) for m, spec in preprocess.items()}
        self.train, self.seed, self.epoch = train, seed, 0
        self._tokenizers: dict[str, Any] = {}

    def set_epoch(self, epoch: int) -> None:
        """Vary the random choices per epoch (still deterministic given seed, epoch and key)."""
        self.epoch = epoch

    def _rng(self, key: str, modality: str) -> random.Random | None:
        if not self.train:
            return None
        if self.seed is None:
            return random.Random()
        return random.Random(_stable_seed(self.seed, self.epoch, key, modality))

    def tokenizer(self, modality: str):
        if modality not in self._tokenizers:
            from clipzoo.core.models.tokenizers import get_tokenizer

            self._tokenizers[modality] = get_tokenizer(self.preprocess[modality]["tokenizer"])
        return self._tokenizers[modality]

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers rebuild tokenizers lazily
        return {**self.__dict__, "_tokenizers": {}}

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        key = str(sample.get("__key__", ""))
        out: dict[str, Any] = {"__key__": key}
        for modality, spec in self.preprocess.items():
            kind = spec.get("kind", "array")
            try:
                if kind == "image":
                    out[modality] = self._image(sample, modality, spec, key)
                elif kind == "text":
                    out[modality] = self._text(sample, modality, key)
                else:
                    out[modality], out[f"{modality}_mask"] = self._array(sample, modality, spec, key)
            except SampleError:
                raise
            except (ValueError, TypeError, KeyError) as exc:
                raise SampleError(f"sample {key!r}, modality {modality!r}: {exc}") from exc
        if "cls" in sample:
            out["cls"] = torch.tensor(int(sample["cls"]), dtype=torch.long)
        return out

    def _field(self, sample: Mapping[str, Any], names: Sequence[str], modality: str, key: str) -> tuple[str, Any]:
        for name in names:
            if name in sample:
                return name, sample[name]
        fields = sorted(k for k in sample if not k.startswith("__"))
        raise MissingFieldError(f"sample {key!r} has no {modality} field ({' / '.join(names)}); it has {fields}",
                                modality, names, fields)

    def _image(self, sample: Mapping[str, Any], modality: str, spec: Mapping[str, Any], key: str) -> torch.Tensor:
        names = [f"{modality}.{ext}" for ext in IMAGE_EXTENSIONS + ARRAY_EXTENSIONS]
        if modality == "image":
            names += COMMUNITY_IMAGE_MEMBERS
        _, value = self._field(sample, names, modality, key)
        channels = int(spec.get("channels", 3))
        if not _is_pil(value):
            value = image_to_tensor(value, channels)
        elif value.mode not in ("RGB", "L", "I;16", "I;16B", "I;16L", "I", "F"):
            value = value.convert("RGB" if channels == 3 else "L")  # palette/RGBA/CMYK -> plain pixels first
        scale = spec.get("train_crop_scale")
        image = resize_crop(
            value,
            spec["size"],
            interpolation=spec.get("interpolation", "bicubic"),
            resize_mode=spec.get("resize_mode", "shortest"),
            crop_scale=scale if self.train else None,
            rng=self._rng(key, modality) if scale else None,
        )
        return normalize(image_to_tensor(image, channels), spec["mean"], spec["std"])

    def _text(self, sample: Mapping[str, Any], modality: str, key: str) -> torch.Tensor:
        names = CAPTION_FIELDS if modality == "text" else (f"{modality}.json", f"{modality}.txt")
        _, value = self._field(sample, names, modality, key)
        caption = choose_caption(value, self._rng(key, modality))
        return self.tokenizer(modality)([caption])[0]

    def _array(
        self, sample: Mapping[str, Any], modality: str, spec: Mapping[str, Any], key: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = spec.get("shape")
        if f"{modality}.npy" not in sample:
            if shape is None or any(s is None for s in shape):
                raise SampleError(f"sample {key!r} has no {modality}.npy and the model gives no shape to zero-fill")
            return torch.zeros(shape), torch.zeros(shape[:1], dtype=torch.bool)
        array = torch.from_numpy(np.asarray(sample[f"{modality}.npy"], dtype=np.float32).copy())
        finite = torch.isfinite(array)
        finite = finite.reshape(finite.shape[0], -1).all(1) if array.dim() > 1 else finite
        if f"{modality}_mask.npy" in sample:
            mask = torch.from_numpy(np.asarray(sample[f"{modality}_mask.npy"]).astype(bool).copy())
            if mask.shape != array.shape[: mask.dim()]:
                raise SampleError(
                    f"sample {key!r}: {modality}_mask shape {tuple(mask.shape)} does not fit {tuple(array.shape)}"
                )
            mask = mask.reshape(mask.shape[0], -1).all(1) if mask.dim() > 1 else mask
            mask = mask & finite
        else:
            mask = finite
        array = torch.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
        array[~mask] = 0.0  # an invalid row (or feature) carries no values, only its mask
        if shape is not None:
            # sequences [L, C] are cropped/padded along L; a feature vector [F] must match exactly
            fixed = shape if len(shape) == 1 else shape[1:]
            actual = array.shape[len(shape) - len(fixed) :]
            if len(shape) != array.dim() or any(s is not None and s != a for s, a in zip(fixed, actual)):
                raise SampleError(
                    f"sample {key!r}: {modality} has shape {tuple(array.shape)}, the model expects {shape}"
                )
            if len(shape) > 1:
                array, mask = fit_length(array, mask, shape[0], self._rng(key, modality))
        return array, mask


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensors/arrays field by field; numbers become a tensor, strings and other values lists.

    Only fields every sample has are kept (e.g. a class index that some samples lack is dropped), so one
    sample with an extra member cannot stop a batch.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    common = set(samples[0]).intersection(*samples[1:])
    for name in (n for n in samples[0] if n in common):
        values = [s[name] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            out[name] = torch.stack(values)
        elif isinstance(first, np.ndarray):
            out[name] = torch.from_numpy(np.stack(values))
        elif isinstance(first, (int, float, bool)):
            out[name] = torch.tensor(values)
        else:
            out[name] = values
    return out
