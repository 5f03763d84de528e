"""Biomed benchmark tasks, built from core's task kinds (:mod:`clipzoo.core.bench.tasks`).

- zero-shot classification of an image folder (``root/<class>/<image>``) or a CSV (``path,label``), with
  prompt templates of the image modality: the label-bearing templates of ``templates/<modality>.txt``
  (``{label}`` read as clip_benchmark's ``{c}``), or the user's;
- image-text retrieval on shards written by ``clipzoo ingest biomed jats`` (figure-caption pairs) or by the
  dicom/nifti/images sources (template captions): every caption of a sample counts.

Registered names: ``biomed/zeroshot`` (any modality), ``biomed/<modality>-zeroshot`` (fundus, pathology,
microscopy, xray, ct, mri, ultrasound) and ``biomed/figure-retrieval``, ``biomed/image-retrieval``. Options come
from ``clipzoo bench --task-option`` / the pipeline's bench section, e.g. ``root=/data/fundus`` or
``shards=/data/pmc-shards``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

ZEROSHOT_MODALITIES = ("fundus", "pathology", "microscopy", "xray", "ct", "mri", "ultrasound")


def prompt_templates(modality: str, extra: str | Path | Sequence[str] | None = None) -> list[str]:
    """Zero-shot prompts for ``modality``: its label-bearing caption templates with ``{label}`` -> ``{c}``.

    Templates that need other fields (``{body_part}``, ``{plane}``...) are left out: a class prompt only
    knows the class name. ``extra`` (a template file or a list, ``{label}`` or ``{c}``) comes first.
    """
    from clipzoo.biomed.captions import CaptionTemplates

    if extra is None or isinstance(extra, (str, Path)):
        templates = CaptionTemplates.from_file(extra).templates(modality)
    else:
        templates = list(extra) + CaptionTemplates().templates(modality)
    out: list[str] = []
    for t in templates:
        t = t.replace("{label}", "{c}")
        fields = {f for f in _fields(t)}
        if fields == {"c"} and t not in out:
            out.append(t)
    if not out:
        raise ValueError(f"no class-name prompt template for modality {modality!r}")
    return out


def _fields(template: str) -> set[str]:
    import string

    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def zeroshot(
    root: str | Path | None = None,
    csv: str | Path | None = None,
    shards: str | Path | None = None,
    modality: str = "generic",
    classnames: Sequence[str] | None = None,
    templates: str | Path | Sequence[str] | None = None,
    path_column: str = "path",
    label_column: str = "label",
    image_root: str | Path | None = None,
    label_field: str | None = None,
    **options: Any,
):
    """Zero-shot classification of labelled images: an image folder (``root/<class>/<image>``), a CSV
    (``path,label``; paths relative to ``image_root`` or the CSV's folder), or a shard folder written by
    ``clipzoo ingest biomed images`` (its ``cls`` labels; class names from the manifest's notes) or by any
    biomed source with ``label_field`` naming a metadata field (e.g. ``plane`` of NIfTI slices) and
    ``classnames`` its values."""
    from clipzoo.core.bench.datasets import CsvDataset, DatasetError, ImageFolder, ShardFolder
    from clipzoo.core.bench.tasks import ZeroShotClassification

    if sum(x is not None for x in (root, csv, shards)) != 1:
        raise ValueError("biomed zero-shot: give exactly one of root=<image folder>, csv=<file.csv> or shards=<folder>")
    names = list(classnames) if classnames is not None else None
    if root is not None:
        dataset = ImageFolder(root=root, classnames=names, name=f"{modality}:{Path(root).name}")
    elif csv is not None:
        dataset = CsvDataset(csv_path=csv, root=image_root, path_column=path_column, label_column=label_column,
                             classnames=names, name=f"{modality}:{Path(csv).stem}")
    else:
        dataset = ShardFolder(folder=shards, name=f"{modality}:{Path(shards).name}", label_field=label_field)
        if names is None and label_field is not None:
            raise DatasetError(f"{shards}: label_field={label_field} needs classnames=[...] (the field's values)")
        if names is None:
            names = [c.replace("_", " ") for c in dataset.manifest.ingest.get("notes", {}).get("classes", [])]
        if not names:
            raise DatasetError(f"{shards}: no class names in its manifest notes; pass classnames=[...]")
        dataset.classnames = names
    return ZeroShotClassification(dataset=dataset, templates=prompt_templates(modality, templates), **options)


def retrieval(shards: str | Path | None = None, limit: int | None = None, **options: Any):
    """Image <-> caption retrieval on an ingested shard folder (samples without an image are left out)."""
    from clipzoo.core.bench.datasets import ShardFolder
    from clipzoo.core.bench.tasks import Retrieval

    if shards is None:
        raise ValueError("biomed retrieval: give shards=<folder written by 'clipzoo ingest biomed ...'>")
    return Retrieval(dataset=ShardFolder(folder=shards, limit=None if limit is None else int(limit)), **options)


def register_tasks(registry) -> None:
    registry.add_task("biomed/zeroshot", zeroshot)
    for modality in ZEROSHOT_MODALITIES:
        factory = functools.partial(zeroshot, modality=modality)
        functools.update_wrapper(factory, zeroshot)
        registry.add_task(f"biomed/{modality}-zeroshot", factory)
    registry.add_task("biomed/figure-retrieval", retrieval)
    registry.add_task("biomed/image-retrieval", retrieval)
