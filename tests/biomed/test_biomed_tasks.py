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


CLASSES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")  # no word inside another


class OracleModel:
    """Stands in for a loaded model where the right answer is forced.

    An image embeds as the one-hot of the class its pixels were cut for (looked up by the pixels' hash), a text
    as the one-hot of the class word it contains. A task that pairs labels, class names, prompts and captions
    correctly then scores exactly 1; with ``shift=1`` every image points at the next class and it scores 0.
    """

    text_modality = "text"

    def __init__(self, pixel_class: dict[str, str], vocabulary: list[str], shift: int = 0):
        from types import SimpleNamespace

        self.pixel_class, self.vocabulary, self.shift = pixel_class, vocabulary, shift
        self.weights_sha256 = f"oracle-shift-{shift}"
        self.model = SimpleNamespace(preprocess={})

    def _onehot(self, index: int) -> np.ndarray:
        row = np.zeros(len(self.vocabulary), dtype=np.float32)
        row[index % len(self.vocabulary)] = 1.0
        return row

    def encode_samples(self, samples, modality, *, batch_size=64, total=None):
        from PIL import Image

        rows = []
        for sample in samples:
            image = next(v for v in sample.values() if isinstance(v, Image.Image))
            label = self.pixel_class[_digest(image)]
            rows.append(self._onehot(self.vocabulary.index(label) + self.shift))
        return np.stack(rows), np.ones(len(rows), dtype=bool)

    def encode_texts(self, texts, modality=None):
        rows = []
        for text in texts:
            (word,) = [w for w in self.vocabulary if w in text.lower()]
            rows.append(self._onehot(self.vocabulary.index(word)))
        return np.stack(rows)


def _digest(image) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()


@pytest.fixture
def crops(shared_data, tmp_path):
    """16 distinct 48x48 crops of the real fundus and pathology images in ``classes/<class>/<n>.png`` (2 per
    class), and which class each crop's pixels belong to."""
    from PIL import Image

    base = shared_data / "biomed" / "medical_images"
    sources = [Image.open(base / "fundus" / "retina.jpg").convert("RGB"),
               Image.open(base / "pathology" / "ihc.png").convert("RGB")]
    root = tmp_path / "classes"
    pixel_class = {}
    for c, label in enumerate(CLASSES):
        (root / label).mkdir(parents=True)
        for n, src in enumerate(sources):
            x, y = 100 + 40 * c, 150 + 30 * c
            crop = src.crop((x, y, x + 48, y + 48))
            crop.save(root / label / f"{n}.png")
            pixel_class[_digest(crop)] = label
    assert len(pixel_class) == 16  # all crops differ
    return root, pixel_class


def _oracle(pixel_class, shift=0):
    return OracleModel(pixel_class, sorted(CLASSES, reverse=True), shift)  # not the datasets' class order


def test_zeroshot_folder_csv_and_shards_score_exactly(crops, ingest, tmp_path):
    from clipzoo.core.bench.cache import Embedder

    root, pixel_class = crops
    task = zeroshot(root=root, modality="fundus")
    assert task.dataset.classnames == list(CLASSES)
    assert task.templates[0] == "A fundus photograph showing {c}."
    right, wrong = (Embedder(_oracle(pixel_class, s), cache_dir=tmp_path / "cache") for s in (0, 1))
    assert task.evaluate(right)["top1"] == 1.0  # 16 images, 8 classes: chance is 1/8
    assert task.evaluate(wrong)["top1"] == 0.0

    csv = root / "labels.csv"  # the CSV lists the classes in another order than the folders
    rows = [f"{label}/{n}.png,{label}" for label in reversed(CLASSES) for n in (0, 1)]
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    task = zeroshot(csv=csv, modality="pathology")
    assert task.dataset.classnames == sorted(CLASSES)
    assert task.evaluate(right)["top1"] == 1.0 and task.evaluate(wrong)["top1"] == 0.0
    with pytest.raises(ValueError, match="exactly one of root"):
        zeroshot(modality="fundus")

    _, _, out = ingest(ImagesSource, [root], modality="generic")
    task = zeroshot(shards=out)
    assert task.dataset.classnames == list(CLASSES)
    assert sorted(s["cls"] for s in task.dataset.samples()) == [c for c in range(8) for _ in (0, 1)]
    assert task.evaluate(right)["top1"] == 1.0 and task.evaluate(wrong)["top1"] == 0.0


def test_retrieval_on_ingested_caption_shards_scores_exactly(crops, ingest, tmp_path):
    """One crop per class, ingested with template captions naming its label: every caption finds its image."""
    from clipzoo.core.bench.cache import Embedder

    root, pixel_class = crops
    one = tmp_path / "one-per-class"
    for label in CLASSES:
        (one / label).mkdir(parents=True)
        shutil.copy(root / label / "1.png", one / label / "1.png")
    _, samples, out = ingest(ImagesSource, [one], modality="pathology")
    assert len(samples) == 8 and all(label in s["txt"] for s, label in zip(
        (samples[k] for k in sorted(samples)), sorted(CLASSES)))
    task = retrieval(shards=out)
    metrics = task.evaluate(Embedder(_oracle(pixel_class), cache_dir=tmp_path / "cache"))
    assert metrics["image2text_R1"] == 1.0 and metrics["text2image_R1"] == 1.0  # chance: 1/8
    metrics = task.evaluate(Embedder(_oracle(pixel_class, shift=1), cache_dir=tmp_path / "cache"))
    assert metrics["image2text_R1"] == 0.0 and metrics["text2image_R1"] == 0.0
