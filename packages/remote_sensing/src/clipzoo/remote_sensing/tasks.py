"""Remote-sensing benchmark tasks, built from core's task kinds (:mod:`clipzoo.core.bench.tasks`).

- ``remote_sensing/retrieval``: image<->text retrieval in the field's protocol (RSICD, RSITMD, UCM,
  Sydney test splits): every image against all captions, i->t and t->i R@1/5/10 and their mean
  (``mean_recall``, RemoteCLIP/GeoRSCLIP's "mR"). The test split is given as caption files + image folder
  (:class:`CaptionImageSet`) or as a captions shard folder; with several languages, each language is scored
  on its own (``de/image2text_R1`` ...) and ``mean_recall`` averages them.
- ``remote_sensing/scene-zeroshot``: zero-shot scene classification from ``root/<class>/<image>`` with RS
  prompt templates; folder names become readable class names (``denseresidential`` -> ``dense residential``).
- ``remote_sensing/ucm-zeroshot``: the same, checked against UC Merced's 21 classes.
- ``remote_sensing/scene-probe`` / ``remote_sensing/scene-gda``: linear probe / GDA few-shot on train/test folders.
- ``remote_sensing/chip-location``: chip <-> location retrieval on GeoTIFF chip shards (``rs-satclip-tiny``).
- ``remote_sensing/simulated-zeroshot``: zero-shot classification of held-out simulated scenes whose classes twin in
  RGB and differ in NIR (:mod:`clipzoo.remote_sensing.simulate`): chance 1/6, an RGB-only model is capped near 1/2.

Import-light: at import only core's dataset helpers (stdlib-only) load; the task kinds, numpy and torch are
imported by the factories when called.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from clipzoo.core.bench.datasets import (Dataset, DatasetError, ImageFolder, SampleList, ShardFolder, file_stamp,
                                         load_image_sample)
from clipzoo.core.data.writer import safe_key

log = logging.getLogger(__name__)

# Satellite/aerial prompts in the style of RemoteCLIP's and CLIP's remote-sensing templates.
RS_TEMPLATES = (
    "a satellite photo of {c}.",
    "an aerial photo of {c}.",
    "a remote sensing image of {c}.",
    "a satellite image of {c}.",
    "an aerial image of {c}.",
    "an overhead view of {c}.",
    "a top-down satellite view of {c}.",
    "a high resolution satellite image of {c}.",
)

UCM_CLASSES = (
    "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral", "denseresidential", "forest",
    "freeway", "golfcourse", "harbor", "intersection", "mediumresidential", "mobilehomepark", "overpass",
    "parkinglot", "river", "runway", "sparseresidential", "storagetanks", "tenniscourt",
)
# Folder names of UCM/AID/RSICD/RSITMD that run words together.
_JOINED_WORDS = {
    "baseballdiamond": "baseball diamond", "denseresidential": "dense residential", "golfcourse": "golf course",
    "mediumresidential": "medium residential", "mobilehomepark": "mobile home park", "parkinglot": "parking lot",
    "sparseresidential": "sparse residential", "storagetanks": "storage tanks", "tenniscourt": "tennis court",
    "bareland": "bare land", "baseballfield": "baseball field", "railwaystation": "railway station",
    "playground": "playground", "storagetank": "storage tank",
}


def readable_classname(folder: str) -> str:
    """``denseresidential``/``DenseResidential``/``dense_residential`` -> ``dense residential``."""
    key = folder.lower().replace("_", "").replace("-", "").replace(" ", "")
    if key in _JOINED_WORDS:
        return _JOINED_WORDS[key]
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", folder)  # CamelCase (AID)
    return re.sub(r"[_\-\s]+", " ", spaced).strip().lower()


class CaptionImageSet(Dataset):
    """A retrieval test set: caption files (precomp folders, COCO or RSICD JSON) and the image folder they name.

    ``tags`` gives each caption file's language; captions of one image from several files are merged into one
    item. Every image the captions name must be found (any extension, any case): a benchmark with silently missing
    images is a different benchmark, so missing ones raise ``DatasetError`` listing them unless ``allow_missing``
    (then they are dropped with a warning). ``langs`` keeps only captions in those languages. The fingerprint
    records the settings and every caption and image file's :func:`file_stamp`.
    """

    def __init__(self, paths: Sequence[Path], tags: Sequence[str], images: str | Path, *, split: str | None = None,
                 fmt: str = "auto", langs: Sequence[str] | None = None, allow_missing: bool = False, name: str = ""):
        from clipzoo.remote_sensing.captions import ImageIndex

        super().__init__(name=name or "+".join(p.stem for p in paths))
        self.tags, self.split, self.langs = list(tags), split, langs
        try:
            index = ImageIndex(images)
        except FileNotFoundError as exc:
            raise DatasetError(str(exc)) from None
        self.stamps: list[str] = []
        items: dict[Path, tuple[str, list[dict]]] = {}
        missing: list[str] = []
        for path, tag in zip(paths, tags):
            for rec in self._records(path, tag, fmt):
                caps = [c.to_dict() for c in rec.captions if langs is None or c.lang in langs]
                if not caps:
                    continue
                img = index.find(rec.image)
                if img is None:
                    missing.append(rec.image)
                    continue
                items.setdefault(img, (safe_key(rec.split, Path(rec.image).stem), []))[1].extend(caps)
        if missing and not allow_missing:
            raise DatasetError(f"{len(missing)} image(s) named by the captions are not under {images}, e.g. "
                               f"{', '.join(missing[:3])}; fix images= or pass allow_missing=True")
        if missing:
            log.warning("retrieval set %s: %d images missing, dropped", self.name, len(missing))
        if not items:
            raise DatasetError(f"retrieval set {self.name}: no image with captions found")
        self.items = [(p, key, caps) for p, (key, caps) in items.items()]
        self.stamps += sorted(file_stamp(p) for p in items)

    def _records(self, path: Path, tag: str, fmt: str) -> list:
        """The caption records of one caption file or precomp folder (of ``split``); its stamps are recorded."""
        from clipzoo.remote_sensing.captions import CaptionFormatError, precomp_splits, read_caption_json, read_precomp

        try:
            if path.is_dir():
                splits = [self.split] if self.split else precomp_splits(path)
                self.stamps += [file_stamp(path / f"{s}_caps.txt") for s in splits]
                return [r for s in splits for r in read_precomp(path, s, tag)]
            self.stamps.append(file_stamp(path))
            return [r for r in read_caption_json(path, lang=tag, fmt=fmt)[1] if self.split is None or r.split == self.split]
        except (CaptionFormatError, OSError) as exc:
            raise DatasetError(str(exc)) from None

    def __len__(self) -> int:
        return len(self.items)

    def samples(self) -> Iterator[dict[str, Any]]:
        for path, key, caps in self.items:
            sample = load_image_sample(path, key)
            sample["captions.json"] = caps
            sample["json"] = {"source": str(path)}
            yield sample

    def fingerprint(self) -> str:
        parts = ["rs-captions", str(self.tags), str(self.split), str(self.langs), *self.stamps]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def caption_image_set(captions: str | Path | Sequence[str | Path], images: str | Path, *,
                      lang: str | Sequence[str] = "en", split: str | None = None, fmt: str = "auto",
                      langs: Sequence[str] | None = None, allow_missing: bool = False, name: str = "") -> CaptionImageSet:
    """A :class:`CaptionImageSet` from one caption file or several; ``lang`` tags the captions of all files, or of
    each file (one tag per file: the same split in several languages)."""
    paths = [Path(p) for p in ([captions] if isinstance(captions, (str, Path)) else captions)]
    tags = [lang] * len(paths) if isinstance(lang, str) else list(lang)
    if len(tags) != len(paths):
        raise DatasetError(f"{len(tags)} language tags for {len(paths)} caption files: give one, or one per file")
    return CaptionImageSet(paths, tags, images, split=split, fmt=fmt, langs=langs, allow_missing=allow_missing,
                           name=name)


def _captions(sample: dict[str, Any]) -> list[dict]:
    caps = sample.get("captions.json") or []
    if isinstance(caps, (bytes, str)):  # undecoded shard member
        caps = json.loads(caps)
    return [c for c in caps if isinstance(c, dict)]


class LanguageView(Dataset):
    """The samples of ``dataset`` with only their ``lang`` captions (samples without any are left out)."""

    def __init__(self, dataset: Dataset, lang: str):
        super().__init__(name=f"{dataset.name}[{lang}]", classnames=dataset.classnames)
        self.dataset, self.lang = dataset, lang

    def samples(self) -> Iterator[dict[str, Any]]:
        for sample in self.dataset.samples():
            caps = [c for c in _captions(sample) if c.get("lang") == self.lang]
            if caps:
                yield {**sample, "captions.json": caps}

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.dataset.fingerprint()}\0lang={self.lang}".encode()).hexdigest()[:16]


def language_view(dataset: Dataset, lang: str) -> LanguageView:
    """The samples of ``dataset`` with only their ``lang`` captions (samples without any are left out)."""
    return LanguageView(dataset, lang)


def caption_languages(dataset) -> list[str]:
    """Languages of the ``captions.json`` entries of a dataset, sorted."""
    return sorted({c.get("lang", "") for s in dataset.samples() for c in _captions(s)} - {""})


def multilingual_retrieval(dataset, ks: Sequence[int] = (1, 5, 10), per_language: bool = True):
    """Core's ``Retrieval`` per caption language; one language behaves exactly like ``Retrieval``.

    Scores stay per test item (an image of ``dataset``), so core's harness gives every language's metrics and
    the overall ``mean_recall`` their chance level and bootstrap interval; an image without captions in a
    language takes no part in that language's metrics.
    """
    from dataclasses import dataclass

    import numpy as np

    from clipzoo.core.bench import metrics as M
    from clipzoo.core.bench.tasks import Retrieval

    def scatter(part: M.ItemScores, where: np.ndarray, n_items: int) -> M.ItemScores:
        """``part``'s scores over a language view's items placed at those items' indices in the whole set."""
        out = M.ItemScores(n_items)
        for m in part.order:
            if m in part.ratios:
                num, den = (np.zeros(n_items), np.zeros(n_items))
                num[where], den[where] = part.ratios[m]
                out.add_ratio(m, num, den, part.chance[m], part.chance_rule[m])
            elif m in part.averages:  # its parts come first in ``order``, so they are placed already
                out.add_average(m, part.averages[m])
            elif m in part.info:
                out.add_info(m, part.info[m])
            else:
                raise ValueError(f"multilingual retrieval: cannot place metric {m!r} (not a ratio or an average)")
        out.counts.update(part.counts)
        return out

    @dataclass
    class MultilingualRetrieval(Retrieval):
        per_language: bool = True

        def _one(self, dataset) -> Retrieval:
            return Retrieval(dataset=dataset, modality=self.modality, text_modality=self.text_modality, ks=self.ks)

        def score(self, embedder) -> M.ItemScores:
            langs = caption_languages(self.dataset) if self.per_language else []
            if len(langs) <= 1:
                return self._one(self.dataset).score(embedder)
            caption_langs = [{c.get("lang") for c in _captions(s)} for s in self.dataset.samples()]
            out = M.ItemScores(len(caption_langs))
            for lang in langs:
                where = np.asarray([i for i, found in enumerate(caption_langs) if lang in found], dtype=np.int64)
                part = self._one(language_view(self.dataset, lang)).score(embedder).prefixed(f"{lang}/")
                out.update(scatter(part, where, len(caption_langs)))
            out.add_average("mean_recall", [f"{lang}/mean_recall" for lang in langs])
            return out

    return MultilingualRetrieval(dataset=dataset, ks=tuple(ks), per_language=per_language)


# -- task factories (registered by the plugin) ----------------------------------------------------
def retrieval_task(captions: Any = None, images: str | None = None, shards: str | None = None, split: str | None = None,
                   lang: str | Sequence[str] = "en", langs: Sequence[str] | None = None, allow_missing: bool = False,
                   per_language: bool = True, ks: Sequence[int] = (1, 5, 10), name: str = ""):
    """``remote_sensing/retrieval``: ``captions`` + ``images`` (caption files and image folder) or ``shards``
    (a ``clipzoo ingest remote_sensing captions --images`` output)."""
    if shards is not None:
        dataset = ShardFolder(folder=shards, name=name)
    elif captions is not None and images is not None:
        dataset = caption_image_set(captions, images, lang=lang, split=split, langs=langs, allow_missing=allow_missing,
                                    name=name)
    else:
        raise DatasetError("remote_sensing/retrieval needs captions=<precomp folder or JSON> and images=<folder>, "
                           "or shards=<captions shard folder>")
    return multilingual_retrieval(dataset, ks=ks, per_language=per_language)


def scene_folder(root: str | Path, classnames: Sequence[str] | None = None):

    folder = ImageFolder(root=root, classnames=list(classnames) if classnames else None)
    if classnames is None:
        folder.classnames = [readable_classname(f) for f in folder.class_folders]
    return folder


def scene_zeroshot_task(root: str | Path = "", classnames: Sequence[str] | None = None,
                        templates: Sequence[str] = RS_TEMPLATES, **options: Any):
    """``remote_sensing/scene-zeroshot``: ``root/<class>/<image>`` with RS prompt templates."""
    from clipzoo.core.bench.tasks import ZeroShotClassification

    if not root:
        raise DatasetError("remote_sensing/scene-zeroshot needs root=<folder of class subfolders>")
    return ZeroShotClassification(dataset=scene_folder(root, classnames), templates=tuple(templates), **options)


def ucm_zeroshot_task(root: str | Path = "", **options: Any):
    """``remote_sensing/ucm-zeroshot``: UC Merced Land Use (21 classes, ``UCMerced_LandUse/Images``)."""
    task = scene_zeroshot_task(root, **options)
    found = [f.lower() for f in task.dataset.class_folders]
    if found != list(UCM_CLASSES):
        raise DatasetError(f"{root} is not UC Merced's Images folder: expected its 21 class folders "
                           f"({', '.join(UCM_CLASSES[:3])}, ...), found {', '.join(found[:5]) or 'none'}")
    return task


def scene_probe_task(train: str | Path = "", test: str | Path = "", **options: Any):
    """``remote_sensing/scene-probe``: logistic regression on frozen embeddings, train/test class folders."""
    from clipzoo.core.bench.tasks import LinearProbe

    return LinearProbe(train=scene_folder(train), test=scene_folder(test), **options)


def scene_gda_task(train: str | Path = "", test: str | Path = "", shots: int = 16,
                   templates: Sequence[str] = RS_TEMPLATES, **options: Any):
    """``remote_sensing/scene-gda``: GDA few-shot (``shots`` per class) ensembled with RS zero-shot prompts."""
    from clipzoo.core.bench.tasks import GDAFewShot

    return GDAFewShot(train=scene_folder(train), test=scene_folder(test), shots=shots, templates=tuple(templates),
                      **options)


def chip_location_task(shards: str | Path = "", ks: Sequence[int] = (1, 5, 10), limit: int | None = None):
    """``remote_sensing/chip-location``: chip <-> location retrieval (SatCLIP-style image/location encoders) on a
    ``clipzoo ingest remote_sensing geotiff`` shard folder (``image.npy`` + ``location.npy``)."""
    from clipzoo.core.bench.tasks import NModalRetrieval

    if not shards:
        raise DatasetError("remote_sensing/chip-location needs shards=<geotiff chip shard folder>")
    return NModalRetrieval(dataset=ShardFolder(folder=shards, limit=limit), modalities=("image", "location"),
                           ks=tuple(ks))


def simulated_zeroshot_task(count: int = 600, seed: int = 1000, size: int = 16, bands: str = "rgbn",
                            templates: Sequence[str] | None = None):
    """``remote_sensing/simulated-zeroshot``: ``count`` simulated scenes (seed ``seed``, default not the training
    seed 0) with the band layout the model was trained on (``bands=rgb`` for the NIR-removed ablation model)."""
    from clipzoo.core.bench.tasks import ZeroShotClassification
    from clipzoo.remote_sensing import simulate

    try:
        names = [simulate.BANDS[i] for i in simulate.band_indexes(bands)]
    except ValueError as exc:
        raise DatasetError(f"remote_sensing/simulated-zeroshot: bands={bands}: {exc}") from None
    if count < len(simulate.COVERS):
        raise DatasetError(f"remote_sensing/simulated-zeroshot: count={count} leaves a class without a scene; "
                           f"give at least {len(simulate.COVERS)}")
    dataset = SampleList(make=lambda: simulate.samples(count, seed, size, names, key_prefix="simtest"),
                         key=f"rs-simulated:{count}:{seed}:{size}:{','.join(names)}", length=count,
                         name=f"simulated-{','.join(names)}-s{seed}", classnames=list(simulate.CLASSNAMES))
    return ZeroShotClassification(dataset=dataset, templates=tuple(templates or simulate.CAPTION_TEMPLATES))


TASKS = {
    "remote_sensing/simulated-zeroshot": simulated_zeroshot_task,
    "remote_sensing/chip-location": chip_location_task,
    "remote_sensing/retrieval": retrieval_task,
    "remote_sensing/scene-zeroshot": scene_zeroshot_task,
    "remote_sensing/ucm-zeroshot": ucm_zeroshot_task,
    "remote_sensing/scene-probe": scene_probe_task,
    "remote_sensing/scene-gda": scene_gda_task,
}
