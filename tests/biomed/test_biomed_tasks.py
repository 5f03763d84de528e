"""Biomed plugin registration and benchmark tasks (zero-shot from a folder/CSV, retrieval on ingested shards)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from clipzoo.biomed.sources import ImagesSource
from clipzoo.biomed.tasks import prompt_templates, retrieval, zeroshot
from clipzoo.core.plugins import PluginRegistry


def test_register_adds_sources_configs_and_tasks():
    from clipzoo.biomed.plugin import register

    registry = PluginRegistry()
    register(registry)
    assert sorted(n for d, n in registry.sources if d == "biomed") == ["dicom", "images", "jats", "nifti"]
    assert registry.model_config_names() == ["biomed-tiny", "biomed-vit-b16"]
    expected = {"biomed/zeroshot", "biomed/fundus-zeroshot", "biomed/xray-zeroshot", "biomed/figure-retrieval"}
    assert expected <= set(registry.tasks)


def test_plugin_import_stays_light():
    code = ("import sys; from clipzoo.biomed.plugin import register; from clipzoo.core.plugins import PluginRegistry;"
            "register(PluginRegistry()); heavy = [m for m in ('torch', 'pydicom', 'monai', 'lxml', 'PIL', 'nibabel') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_prompt_templates_per_modality():
    assert prompt_templates("fundus")[:2] == ["A fundus photograph showing {c}.", "A retinal image with signs of {c}."]
    assert all("{c}" in t and "{plane}" not in t for t in prompt_templates("ct"))
    assert prompt_templates("CR", ["a chest radiograph of {c}"])[0] == "a chest radiograph of {c}"


@pytest.fixture
def class_folder(shared_data, tmp_path):
    root = tmp_path / "classes"
    for label, src in (("fundus_photo", "fundus/retina.jpg"), ("tissue", "pathology/ihc.png")):
        (root / label).mkdir(parents=True)
        shutil.copy(shared_data / "biomed" / "medical_images" / src, root / label)
    return root


@pytest.fixture
def tiny_model(tmp_path):
    from clipzoo.biomed.plugin import CONFIG_DIR
    from clipzoo.core.models import create_model, save_pretrained
    from clipzoo.core.registry.loading import LoadedModel

    import torch

    torch.manual_seed(0)
    save_pretrained(create_model(CONFIG_DIR / "biomed-tiny.json"), tmp_path / "model")
    return LoadedModel.from_package(tmp_path / "model", device="cpu")


def test_zeroshot_folder_and_csv_evaluate(class_folder, tiny_model, tmp_path):
    from clipzoo.core.bench.cache import Embedder

    task = zeroshot(root=class_folder, modality="fundus")
    assert task.dataset.classnames == ["fundus photo", "tissue"]
    assert task.templates[0] == "A fundus photograph showing {c}."
    metrics = task.evaluate(Embedder(tiny_model, cache_dir=tmp_path / "cache"))
    assert metrics["top1"] in (0.0, 0.5, 1.0)  # 2 images, 2 classes
    csv = class_folder / "labels.csv"
    csv.write_text("path,label\nfundus_photo/retina.jpg,fundus\ntissue/ihc.png,pathology\n")
    task = zeroshot(csv=csv, modality="pathology")
    assert task.dataset.classnames == ["fundus", "pathology"] and task.dataset.labels() == [0, 1]
    with pytest.raises(ValueError, match="exactly one of root"):
        zeroshot(modality="fundus")


def test_zeroshot_on_labelled_shards(ingest, class_folder):
    summary, _, out = ingest(ImagesSource, [class_folder], modality="generic", max_side=64)
    task = zeroshot(shards=out)
    assert task.dataset.classnames == ["fundus photo", "tissue"]
    assert sorted(s["cls"] for s in task.dataset.samples()) == [0, 1]


def test_retrieval_on_ingested_caption_shards(ingest, class_folder, tiny_model, tmp_path):
    from clipzoo.core.bench.cache import Embedder

    _, samples, out = ingest(ImagesSource, [class_folder], modality="generic", max_side=128)
    assert len(samples) == 2
    metrics = retrieval(shards=out).evaluate(Embedder(tiny_model, cache_dir=tmp_path / "cache"))
    assert 0.0 <= metrics["mean_recall"] <= 1.0
    assert metrics["image2text_R10"] == 1.0 and metrics["text2image_R10"] == 1.0  # 2 samples: always found
    assert np.isfinite(list(metrics.values())).all()
