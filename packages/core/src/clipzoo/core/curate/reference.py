"""The benchmark side of decontamination: signatures of the samples a bench task, shard folder or image folder holds.

A bench task is built through the task registry exactly as ``clipzoo bench`` builds it (name + options); the
datasets it evaluates on are its :class:`~clipzoo.core.bench.datasets.Dataset` attributes. What was used is
returned as ``against`` records (kind, name, options, sample count, fingerprint), which the curated manifest
keeps so a model card can say what its training data was decontaminated against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clipzoo.core.curate.signatures import Signature, SignatureSpec, iter_shard, signature_of

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def _task_datasets(name: str, options: dict[str, Any]):
    from clipzoo.core.bench.datasets import Dataset
    from clipzoo.core.plugins import get_registry

    from clipzoo.core.curate.steps import CurateError

    try:
        task = get_registry().task(name)(**options)
    except TypeError as exc:
        raise CurateError(f"decontaminate: task {name}: bad options {options}: {exc}") from None
    datasets = [v for v in vars(task).values() if isinstance(v, Dataset)]
    if not datasets:
        raise CurateError(f"decontaminate: task {name} holds no dataset to decontaminate against")
    return datasets


def reference_signatures(tasks: list[dict[str, Any]], shards: list[Path], images: list[Path],
                         spec: SignatureSpec) -> tuple[list[Signature], list[dict[str, Any]]]:
    """Signatures of every benchmark sample, and the record of what they came from."""
    from clipzoo.core.curate.steps import CurateError
    from clipzoo.core.data.writer import MANIFEST_NAME, Manifest

    ref_spec = SignatureSpec(phash=True, num_perm=spec.num_perm, text_fields=spec.text_fields)
    sigs: list[Signature] = []
    against: list[dict[str, Any]] = []
    for task in tasks:
        options = dict(task.get("options") or {})
        for ds in _task_datasets(task["name"], options):
            n0 = len(sigs)
            for sample in ds.samples():
                sigs.append(signature_of(sample, ref_spec, order=len(sigs)))
            against.append({"kind": "task", "name": task["name"], "options": options, "dataset": ds.name,
                            "fingerprint": ds.fingerprint(), "samples": len(sigs) - n0})
    for folder in shards:
        if not (Path(folder) / MANIFEST_NAME).is_file():
            raise CurateError(f"decontaminate: {folder} is not a shard folder (no {MANIFEST_NAME})")
        manifest = Manifest.load(folder)
        n0 = len(sigs)
        for info, url in zip(manifest.shards, manifest.shard_paths(folder)):
            for sample in iter_shard(url, info.bytes):
                sigs.append(signature_of(sample, ref_spec, order=len(sigs)))
        against.append({"kind": "shards", "name": Path(folder).name,
                        "fingerprint": "-".join(s.sha256[:8] for s in manifest.shards)[:64], "samples": len(sigs) - n0})
    for folder in images:
        folder = Path(folder)
        if not folder.is_dir():
            raise CurateError(f"decontaminate: images {folder}: no such folder")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise CurateError(f"decontaminate: images {folder}: holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        from clipzoo.core.bench.datasets import load_image_sample

        for path in files:
            sample = load_image_sample(path, str(path.relative_to(folder)))
            sidecar = path.with_suffix(".txt")
            if sidecar.is_file():
                sample["txt"] = sidecar.read_text(encoding="utf-8")
            sample["json"] = {}
            sigs.append(signature_of(sample, ref_spec, order=len(sigs)))
        against.append({"kind": "images", "name": folder.name, "samples": len(files)})
    return sigs, against
