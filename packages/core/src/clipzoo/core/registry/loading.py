"""Load a model by reference, ready to use: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a folder.

A registered version's model package is downloaded once into ``<CLIPZOO_HOME>/models/<store>/<name>/<version>``
(versions are immutable), then built with :func:`clipzoo.core.models.load_pretrained`. The
:class:`LoadedModel` carries the model, its sample transform and tokenizer, and helpers that embed
images, texts, arrays and whole samples in batches.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from clipzoo.core.registry.errors import RegistryError

log = logging.getLogger(__name__)

PACKAGE_ARTIFACT = "package"  # the model package's folder inside the logged pyfunc's artifacts
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))?/?$")


@dataclass
class ModelRef:
    """A parsed reference: a registered ``name`` with ``version`` or ``alias``, or a local ``path``."""

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"{self.name}/{self.version}" if self.version else self.uri


def parse_ref(ref: str | os.PathLike) -> ModelRef:
    text = str(ref)
    if text.startswith("models:/"):
        match = _URI.match(text)
        if not match:
            raise RegistryError(f"bad model URI {text!r}: use models:/NAME@ALIAS, models:/NAME/VERSION or a model folder")
        return ModelRef(uri=text, name=match["name"], version=match["version"], alias=match["alias"])
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelRef(uri=text, path=path.resolve())
    raise RegistryError(
        f"{text!r} is neither a model folder nor a registry URI (models:/NAME@ALIAS, models:/NAME/VERSION)"
    )


def resolve_version(ref: ModelRef, client, store_uri: str) -> Any:
    """The ``ModelVersion`` a registry reference points at; errors list what exists instead."""
    from mlflow.exceptions import MlflowException

    names = [m.name for m in client.search_registered_models(max_results=1000)]
    if ref.name not in names:
        raise RegistryError(
            f"no registered model {ref.name!r} in {store_uri}; registered: {', '.join(sorted(names)) or 'none'}"
        )
    versions = client.search_model_versions(f"name = '{ref.name}'", max_results=10000)
    if ref.alias:
        try:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        except MlflowException:
            aliases = sorted(client.get_registered_model(ref.name).aliases or {})
            raise RegistryError(
                f"model {ref.name!r} has no alias {ref.alias!r}; aliases: {', '.join(aliases) or 'none'}"
            ) from None
    if ref.version is None:  # models:/NAME: the newest version
        return max(versions, key=lambda v: int(v.version))
    for v in versions:
        if str(v.version) == str(ref.version):
            return v
    known = sorted(int(v.version) for v in versions)
    raise RegistryError(f"model {ref.name!r} has no version {ref.version}; versions: {', '.join(map(str, known))}")


def _cache_root(tracking: str) -> Path:
    from clipzoo.core.registry.store import clipzoo_home

    store = hashlib.sha256(tracking.encode()).hexdigest()[:12]
    return clipzoo_home() / "models" / store


def _package_in(model_dir: Path) -> Path | None:
    """The model package folder inside a downloaded pyfunc model (its MLmodel names the artifact's path)."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        return None
    spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    artifacts = (spec.get("flavors", {}).get("python_function", {}) or {}).get("artifacts") or {}
    rel = (artifacts.get(PACKAGE_ARTIFACT) or {}).get("path")
    package = model_dir / rel if rel else None
    return package if package is not None and (package / "config.json").is_file() else None


def download_package(version, client, tracking: str) -> Path:
    """The model package folder of a registered version, downloaded once (atomically) into the cache."""
    import mlflow.artifacts

    target = _cache_root(tracking) / version.name / str(version.version)
    found = _package_in(target)
    if found is not None:
        return found
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        source = client.get_model_version_download_uri(version.name, str(version.version))
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp), tracking_uri=tracking))
        if _package_in(model_dir) is None:
            raise RegistryError(
                f"version {version.version} of {version.name!r} holds no clipzoo model package ({source}); "
                "was it registered with 'clipzoo registry register'?"
            )
        shutil.rmtree(target, ignore_errors=True)  # a partial folder left by a crashed process
        try:
            os.replace(model_dir, target)
        except OSError:  # another process finished the same download first
            if _package_in(target) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _package_in(target)


@dataclass
class LoadedModel:
    """A model ready to embed: ``model`` (``ContrastiveModel``), ``transform`` and ``tokenizer``.

    ``weights_sha256`` identifies the weights (the embedding cache keys on it); ``version`` is the
    registry ``ModelVersion`` when the model came from the registry.
    """

    model: Any
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

    @classmethod
    def from_package(cls, package_dir: str | os.PathLike, *, uri: str | None = None, device: str | None = None, **kw) -> "LoadedModel":
        import torch

        from clipzoo.core.data.transforms import SampleTransform
        from clipzoo.core.models import get_tokenizer, load_pretrained
        from clipzoo.core.registry.card import WEIGHTS_NAME, sha256_file

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
            weights_sha256=kw.pop("weights_sha256", None) or sha256_file(package_dir / WEIGHTS_NAME),
            uri=uri or str(package_dir),
            device=device,
            **kw,
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

        cache = self.__dict__.setdefault("_modality_transforms", {})
        if modality not in cache:
            cache[modality] = SampleTransform({modality: self.model.preprocess[modality]}, train=False)
        return cache[modality]

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


def load_model(ref: str | os.PathLike, *, tracking_uri: str | None = None, device: str | None = None) -> LoadedModel:
    """A model ready to use from ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME`` (newest) or a folder."""
    parsed = parse_ref(ref)
    if parsed.path is not None:
        return LoadedModel.from_package(parsed.path, uri=parsed.uri, device=device)
    from clipzoo.core.registry import store

    uri = store.tracking_uri(tracking_uri)
    client = store.get_client(uri)
    version = resolve_version(parsed, client, uri)
    package = download_package(version, client, uri)
    log.info("loaded %s (version %s) from %s", parsed.uri, version.version, uri)
    return LoadedModel.from_package(
        package,
        uri=parsed.uri,
        device=device,
        name=version.name,
        version=version,
        tracking_uri=uri,
        weights_sha256=version.tags.get("weights_sha256"),
        info={"tags": dict(version.tags), "aliases": list(version.aliases)},
    )
