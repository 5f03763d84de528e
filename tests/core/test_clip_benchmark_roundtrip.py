"""clip_benchmark on an exported model gives the same zero-shot numbers as ``clipzoo bench`` on the same images.

An image folder is cut from real images in the shared data (4 classes of 2-4 crops of one source image each);
``clipzoo export --format open_clip`` writes the model; clip_benchmark 1.6.2 runs in-process through its own
command line (``clip_benchmark eval --model_type open_clip --model local-dir:DIR ...``) on the same images,
converted to its ``wds/`` layout by its own converter (it has no generic image-folder dataset).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from clipzoo.core.cli import main
from clipzoo.core.models import create_model, save_pretrained

# reuse the NumPy-2 fix of clip_benchmark's accuracy() from the metrics test (tests/core is on sys.path)
from test_bench_metrics import _clip_benchmark_accuracy

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
SOURCES = {  # class folder -> real image it is cut from
    "airport": "remote_sensing/images/rsicd/airport_17.jpg",
    "square": "remote_sensing/images/rsicd/square_102.jpg",
    "retina": "biomed/medical_images/fundus/retina.jpg",
    "tissue": "biomed/medical_images/pathology/ihc.png",
}
COUNTS = {"airport": 2, "square": 3, "retina": 4, "tissue": 3}  # unequal, so top-1 and mean per-class recall differ
CROPS = [(0.0, 0.0), (0.3, 0.2), (0.5, 0.5), (0.1, 0.6)]  # corner offsets (fractions of half the side)
TEMPLATES = ["a photo of a {c}.", "an image of the {c}"]


@pytest.fixture(scope="module")
def image_folder(shared_data, tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("folder")
    for name, rel in SOURCES.items():
        image = Image.open(shared_data / rel).convert("RGB")
        w, h = image.size
        (root / name).mkdir()
        for i, (fx, fy) in enumerate(CROPS[: COUNTS[name]]):
            box = (int(fx * w / 2), int(fy * h / 2), int(fx * w / 2 + w / 2), int(fy * h / 2 + h / 2))
            image.crop(box).save(root / name / f"{i}.png")
    return root


def _as_clip_benchmark_wds(image_folder, out):
    """The folder in clip_benchmark's wds layout, written by its own converter (image bytes copied as they are)."""
    from clip_benchmark.webdataset_builder import convert_dataset, path_to_bytes

    class Items(list):
        classes = sorted(p.name for p in image_folder.iterdir())
        templates = TEMPLATES

    items = Items((str(path), label) for label, name in enumerate(Items.classes)
                  for path in sorted((image_folder / name).iterdir()))
    convert_dataset(items, "test", str(out), transform=path_to_bytes, verbose=False)
    return out


@pytest.mark.slow  # clip_benchmark's converter forks 8 workers; export, bench and eval each load the model
def test_clip_benchmark_on_the_export_equals_clipzoo_bench(image_folder, tmp_path, monkeypatch, capsys):
    from clip_benchmark import cli as cb_cli
    from clip_benchmark.metrics import zeroshot_classification

    torch.manual_seed(9)  # a random model that predicts three of the four classes (top-1 1/2, recall 9/16)
    package = save_pretrained(create_model(TINY), tmp_path / "pkg")
    exported = tmp_path / "oc"
    assert main(["export", str(package), "--format", "open_clip", "--out", str(exported)]) == 0

    results = tmp_path / "zoo.json"
    assert main(["bench", str(package), "--task", "core/imagefolder-zeroshot", "--set", f"root={image_folder}",
                 "--set", f"templates={json.dumps(TEMPLATES)}", "--no-log", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(results)]) == 0
    zoo = json.loads(results.read_text())["tasks"]["core/imagefolder-zeroshot"]["metrics"]

    wds_root = _as_clip_benchmark_wds(image_folder, tmp_path / "wds")
    # clip_benchmark 1.6.2's accuracy() calls float() on a 1-element array, which NumPy 2 refuses: patch that function
    monkeypatch.setattr(zeroshot_classification, "accuracy", _clip_benchmark_accuracy)
    cb_out = tmp_path / "cb.json"
    monkeypatch.setattr(sys, "argv", [
        "clip_benchmark", "eval", "--model_type", "open_clip", "--model", f"local-dir:{exported}",
        "--dataset", "wds/crops", "--dataset_root", str(wds_root), "--task", "zeroshot_classification",
        "--no_amp", "--num_workers", "0", "--batch_size", "5", "--output", str(cb_out), "--quiet",
    ])
    cb_cli.main()
    cb = json.loads(cb_out.read_text())["metrics"]

    assert cb["acc1"] == pytest.approx(zoo["top1"], abs=1e-9)
    assert cb["mean_per_class_recall"] == pytest.approx(zoo["mean_per_class_recall"], abs=1e-9)
    # not the 1/4 recall that predicting one class for every image gives: the two harnesses agree on varied predictions
    assert zoo["mean_per_class_recall"] != pytest.approx(0.25) and 0.0 < zoo["top1"] < 1.0
