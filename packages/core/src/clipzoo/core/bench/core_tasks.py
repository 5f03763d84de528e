"""Core's own benchmark tasks, on the seeded synthetic shapes set (``clipzoo.core.data.synthetic``).

They need no download, so every model trained on the synthetic set (the demo) can be benchmarked
and compared. Import-light: the task factories import what they need when called.
"""

from __future__ import annotations

from typing import Any

SHAPE_TEMPLATES = ("a {c}", "a {c} in the image", "there is a {c}")
COLOUR_TEMPLATES = ("a {c} shape", "something {c}", "a {c} object")


def synthetic_dataset(split: str = "test", count: int = 200, seed: int = 0, image_size: int = 64, label: str | None = None):
    """The synthetic split as a bench dataset; ``label`` = ``"shape"`` or ``"colour"`` adds class labels."""
    from clipzoo.core.bench.datasets import SampleList
    from clipzoo.core.data import synthetic

    classes = {"shape": list(synthetic.SHAPES), "colour": list(synthetic.COLOURS), None: None}
    if label not in classes:
        raise ValueError(f"label must be 'shape', 'colour' or None, not {label!r}")
    names = classes[label]

    def make():
        for sample in synthetic.synthetic_samples(count, seed, split, image_size):
            if names is not None:
                sample["cls"] = names.index(sample["json"]["attributes"][label])
            yield sample

    key = f"synthetic/{split}/{count}/{seed}/{image_size}/{label}"
    return SampleList(name=f"synthetic-{split}", classnames=names, make=make, key=key, length=count)


def synthetic_retrieval(count: int = 200, seed: int = 0, image_size: int = 64, **options: Any):
    """Caption <-> image retrieval on distinct held-out shape descriptions (chance R@1 = 1/count)."""
    from clipzoo.core.bench.tasks import Retrieval

    return Retrieval(dataset=synthetic_dataset("test", count, seed, image_size), **options)


def synthetic_shape_zeroshot(count: int = 200, seed: int = 0, image_size: int = 64, **options: Any):
    """Zero-shot shape classification (circle, square, triangle, cross)."""
    from clipzoo.core.bench.tasks import ZeroShotClassification

    options.setdefault("templates", SHAPE_TEMPLATES)
    return ZeroShotClassification(dataset=synthetic_dataset("test", count, seed, image_size, "shape"), **options)


def synthetic_colour_zeroshot(count: int = 200, seed: int = 0, image_size: int = 64, **options: Any):
    """Zero-shot colour classification (8 colours; top-5 reported)."""
    from clipzoo.core.bench.tasks import ZeroShotClassification

    options.setdefault("templates", COLOUR_TEMPLATES)
    return ZeroShotClassification(dataset=synthetic_dataset("test", count, seed, image_size, "colour"), **options)


def synthetic_colour_probe(train_count: int = 200, count: int = 200, seed: int = 0, image_size: int = 64, **options: Any):
    """Linear probe of colour on frozen image embeddings (train split -> held-out test split)."""
    from clipzoo.core.bench.tasks import LinearProbe

    return LinearProbe(
        train=synthetic_dataset("train", train_count, seed + 1, image_size, "colour"),
        test=synthetic_dataset("test", count, seed, image_size, "colour"),
        **options,
    )


def synthetic_shape_gda(shots: int = 4, train_count: int = 200, count: int = 200, seed: int = 0, image_size: int = 64, **options: Any):
    """GDA few-shot shape classification from ``shots`` training images per shape."""
    from clipzoo.core.bench.tasks import GDAFewShot

    options.setdefault("templates", SHAPE_TEMPLATES)
    return GDAFewShot(
        train=synthetic_dataset("train", train_count, seed + 1, image_size, "shape"),
        test=synthetic_dataset("test", count, seed, image_size, "shape"),
        shots=shots,
        seed=seed,
        **options,
    )


TASKS = {
    "core/synthetic-retrieval": synthetic_retrieval,
    "core/synthetic-shape": synthetic_shape_zeroshot,
    "core/synthetic-colour": synthetic_colour_zeroshot,
    "core/synthetic-colour-probe": synthetic_colour_probe,
    "core/synthetic-shape-gda": synthetic_shape_gda,
}


# -- generic tasks on a user's own data (options name the data: clipzoo bench ... --set root=DIR) ---------
def imagefolder_zeroshot(root: str, templates: list[str] | None = None, classnames: list[str] | None = None, **options: Any):
    """Zero-shot classification of an image folder (class subfolders); ``root=DIR``."""
    from clipzoo.core.bench.datasets import ImageFolder
    from clipzoo.core.bench.tasks import DEFAULT_TEMPLATES, ZeroShotClassification

    return ZeroShotClassification(dataset=ImageFolder(root=root, classnames=classnames),
                                  templates=templates or DEFAULT_TEMPLATES, **options)


def imagefolder_linear_probe(train_root: str, test_root: str, **options: Any):
    """Linear probe from one image folder (``train_root=DIR``) to another (``test_root=DIR``)."""
    from clipzoo.core.bench.datasets import ImageFolder
    from clipzoo.core.bench.tasks import LinearProbe

    return LinearProbe(train=ImageFolder(root=train_root), test=ImageFolder(root=test_root), **options)


def csv_zeroshot(csv: str, templates: list[str] | None = None, classnames: list[str] | None = None, **options: Any):
    """Zero-shot classification of the images listed in a CSV (``path,label`` columns); ``csv=FILE``."""
    from clipzoo.core.bench.datasets import CsvDataset
    from clipzoo.core.bench.tasks import DEFAULT_TEMPLATES, ZeroShotClassification

    return ZeroShotClassification(dataset=CsvDataset(csv_path=csv, classnames=classnames),
                                  templates=templates or DEFAULT_TEMPLATES, **options)


def shards_retrieval(folder: str, limit: int | None = None, **options: Any):
    """Image <-> caption retrieval on a shard folder written by clipzoo ingest; ``folder=DIR``."""
    from clipzoo.core.bench.datasets import ShardFolder
    from clipzoo.core.bench.tasks import Retrieval

    return Retrieval(dataset=ShardFolder(folder=folder, limit=limit), **options)


TASKS.update({
    "core/imagefolder-zeroshot": imagefolder_zeroshot,
    "core/imagefolder-linear-probe": imagefolder_linear_probe,
    "core/csv-zeroshot": csv_zeroshot,
    "core/shards-retrieval": shards_retrieval,
})
