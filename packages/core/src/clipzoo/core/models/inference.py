"""Inference on a loaded model package: :class:`LoadedModel` embeds texts, images, arrays and whole samples.

A :class:`LoadedModel` is a model package folder (:mod:`clipzoo.core.models.package`) built into a
:class:`~clipzoo.core.models.factory.ContrastiveModel` in eval mode, with the sample transform and tokenizer
its preprocess describes. Where the folder came from (a registry URI resolved by
:mod:`clipzoo.core.registry.loading`, or a local path) is recorded, not looked up here: this module imports
nothing from the registry. ``clipzoo.core.load(...)`` is the public way in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:
    from clipzoo.core.models.factory import ContrastiveModel


@dataclass
class LoadedModel:
    """A model ready to embed: ``model`` (``ContrastiveModel``), ``transform`` and ``tokenizer``.

    ``weights_sha256`` identifies the weights (the embedding cache keys on it); ``version`` is the
    registry ``ModelVersion`` when the model came from the registry.
    """

    model: ContrastiveModel
    transform: Callable[[dict[str, Any]], dict[str, Any]]
    tokenizer: Callable[[list[str]], Any] | None
    package_dir: Path
    weights_sha256: str
    uri: str
    name: str | None = None
    version: Any = None
    tracking_uri: str | None = None
    device: str = "cpu"
    info: dict[str, Any] = field(default_factory=dict)
    #: one-modality transforms built on first use by :meth:`modality_transform`
    modality_transforms: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_package(
        cls,
        package_dir: str | os.PathLike,
        *,
        uri: str | None = None,
        device: str | None = None,
        name: str | None = None,
        version: Any = None,
        tracking_uri: str | None = None,
        weights_sha256: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> "LoadedModel":
        """Load a model package folder onto ``device`` (default: CUDA when there is one) in eval mode.

        ``name``/``version``/``tracking_uri``/``weights_sha256``/``info`` are what the registry knows about it
        (``weights_sha256`` is computed from the weights file when not given).
        """
        import torch

        from clipzoo.core.data.transforms import SampleTransform
        from clipzoo.core.models.factory import load_pretrained
        from clipzoo.core.models.package import WEIGHTS_NAME, sha256_file
        from clipzoo.core.models.tokenizers import get_tokenizer

        package_dir = Path(package_dir)
        model = load_pretrained(package_dir)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device).eval()
        text_cfg = next((p for p in model.preprocess.values() if isinstance(p, dict) and p.get("kind") == "text"), None)
        return cls(
            model=model,
            transform=SampleTransform(model.preprocess, train=False),
            tokenizer=get_tokenizer(text_cfg) if text_cfg is not None else None,
            package_dir=package_dir,
            weights_sha256=weights_sha256 or sha256_file(package_dir / WEIGHTS_NAME),
            uri=uri or str(package_dir),
            name=name,
            version=version,
            tracking_uri=tracking_uri,
            device=device,
            info=dict(info or {}),
        )

    # -- what the model can embed
    @property
    def modalities(self) -> list[str]:
        return list(self.model.modalities)

    @property
    def text_modality(self) -> str | None:
        return next((m for m, p in self.model.preprocess.items() if isinstance(p, dict) and p.get("kind") == "text"), None)

    @property
    def label(self) -> str:
        if self.name and self.version is not None:
            return f"{self.name}/v{self.version.version}"
        return self.uri

    def modality_transform(self, modality: str):
        """A transform for ``modality`` alone (the full ``transform`` needs every modality in each sample)."""
        from clipzoo.core.data.transforms import SampleTransform

        if modality not in self.modality_transforms:
            self.modality_transforms[modality] = SampleTransform({modality: self.model.preprocess[modality]}, train=False)
        return self.modality_transforms[modality]

    def _require(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ValueError(f"model {self.label} has no {modality!r} tower; it embeds {', '.join(self.modalities)}")

    def _encode_batches(self, modality: str, batches: Iterable[tuple[Any, Any]], total: int | None, desc: str):
        import numpy as np
        import torch
        from tqdm import tqdm

        out = []
        with torch.inference_mode(), tqdm(total=total, desc=desc, unit="item", disable=total is not None and total < 256,
                                          leave=False) as bar:
            for x, mask in batches:
                x = x.to(self.device)
                mask = mask.to(self.device) if mask is not None else None
                out.append(self.model.encode(modality, x, mask=mask).float().cpu().numpy())
                bar.update(len(x))
        if not out:
            return np.zeros((0, self.model.embed_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    # -- embedding helpers (L2-normalised float32 numpy arrays)
    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 256, modality: str | None = None):
        modality = modality or self.text_modality
        if modality is None or self.tokenizer is None:
            raise ValueError(f"model {self.label} has no text tower; it embeds {', '.join(self.modalities)}")
        self._require(modality)
        tokenizer = self.tokenizer if modality == self.text_modality else self.modality_transform(modality).tokenizer(modality)
        texts = list(texts)
        batches = ((tokenizer(texts[i:i + batch_size]), None) for i in range(0, len(texts), batch_size))
        return self._encode_batches(modality, batches, len(texts), f"embed {modality}")

    def encode_samples(self, samples: Iterable[dict[str, Any]], modality: str, *, batch_size: int = 64,
                       total: int | None = None):
        """Embed ``modality`` of decoded shard-format samples (run through the model's transform).

        Returns ``(embeddings [N, D], present [N] bool)``; a sample whose modality mask is all False is
        not present (its row is still computed, from the zero-filled array). ``total`` sizes the progress bar.
        """
        import numpy as np
        import torch

        self._require(modality)
        transform = self.modality_transform(modality)
        present: list[bool] = []

        def batches():
            xs, masks = [], []
            for sample in samples:
                item = transform(sample)
                if modality not in item:
                    raise ValueError(f"sample {sample.get('__key__')} has no {modality!r} after the transform (keys: {sorted(item)})")
                xs.append(torch.as_tensor(item[modality]))
                mask = item.get(f"{modality}_mask")
                masks.append(torch.as_tensor(mask, dtype=torch.bool) if mask is not None else None)
                present.append(bool(mask.any()) if mask is not None else True)
                if len(xs) == batch_size:
                    yield _stack(xs, masks)
                    xs, masks = [], []
            if xs:
                yield _stack(xs, masks)

        emb = self._encode_batches(modality, batches(), total=total, desc=f"embed {modality}")
        return emb, np.asarray(present, dtype=bool)

    def encode_images(self, images: Sequence[Any], *, batch_size: int = 64, modality: str = "image"):
        """Embed PIL images (or ``HxWxC`` uint8 / ``CxHxW`` float arrays) with the model's image preprocessing."""
        import numpy as np

        def samples():
            for i, img in enumerate(images):
                field_name = "image.npy" if isinstance(img, np.ndarray) else "image.png"
                yield {"__key__": f"{i:06d}", field_name: img, "json": {}}

        return self.encode_samples(samples(), modality, batch_size=batch_size)[0]

    def encode_arrays(self, modality: str, arrays: Sequence[Any], masks: Sequence[Any] | None = None, *, batch_size: int = 256):
        """Embed arrays of a non-image, non-text modality (light curves, spectra, metadata vectors)."""
        import numpy as np

        def samples():
            for i, arr in enumerate(arrays):
                arr = np.asarray(arr)
                sample = {"__key__": f"{i:06d}", f"{modality}.npy": arr, "json": {}}
                sample[f"{modality}_mask.npy"] = (np.asarray(masks[i], dtype=bool) if masks is not None
                                                  else np.ones(arr.shape[:1], dtype=bool))
                yield sample

        return self.encode_samples(samples(), modality, batch_size=batch_size)[0]


def _stack(xs: list, masks: list):
    import torch

    x = torch.stack(xs)
    if any(m is None for m in masks):
        return x, None
    mask = torch.stack(masks)
    # a [B] mask only says which rows are present; the tower takes only masks over positions/features
    return x, (mask if mask.dim() > 1 else None)
