"""Bench metrics against the community harness (clip_benchmark) and a direct numpy GDA.

A tiny open_clip-architecture model with seeded random weights, a small image folder and a shard
folder with several captions per image, all made here. Zero-shot top-1/top-5/mean per-class recall
and retrieval recalls must equal clip_benchmark's on the same data to 1e-6.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clipzoo.core.bench import metrics as M
from clipzoo.core.bench.cache import Embedder
from clipzoo.core.bench.datasets import CsvDataset, ImageFolder, ShardFolder
from clipzoo.core.bench.tasks import GDAFewShot, Retrieval, ZeroShotClassification, sample_shots

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = ["red square", "green circle", "blue triangle", "yellow cross", "white dot", "purple ring"]
TEMPLATES = ["a photo of a {c}.", "a drawing of a {c}", "{c}"]
CAPTIONS = ["a {c} on black", "the {c}, centred", "picture {i}: {c}"]


def _image(rng: np.random.Generator, colour: tuple[int, int, int]):
    from PIL import Image

    arr = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
    y, x = rng.integers(4, 20, 2)
    arr[y : y + 14, x : x + 18] = colour
    return Image.fromarray(arr)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from clipzoo.core.models import create_model, save_pretrained
    from clipzoo.core.models import LoadedModel

    torch.manual_seed(1234)
    package = save_pretrained(create_model(TINY), tmp_path_factory.mktemp("pkg") / "tiny")
    return LoadedModel.from_package(package, device="cpu")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(7)
    for c, name in enumerate(CLASSES):
        (root / name.replace(" ", "_")).mkdir()
        for i in range(3):
            _image(rng, tuple(int(v) for v in rng.integers(80, 255, 3))).save(root / name.replace(" ", "_") / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def caption_shards(tmp_path_factory):
    from clipzoo.core.data.writer import ShardWriter

    out = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(11)
    captions = []
    with ShardWriter(out, max_count=5) as writer:  # 3 shards: order across shards matters too
        for i in range(12):
            name = CLASSES[i % len(CLASSES)]
            caps = [t.format(c=name, i=i) for t in CAPTIONS[: 1 + i % 3]]  # 1, 2 or 3 captions
            captions.append(caps)
            writer.write({"__key__": f"s{i:03d}", "image.png": _image(rng, (200, 40 + 10 * i, 90)),
                          "captions.json": [{"text": t, "lang": "en"} for t in caps], "json": {"i": i}})
    return out, captions


class _ClipBenchAdapter(torch.nn.Module):
    """What clip_benchmark calls: encode_image / encode_text (it normalises itself)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def encode_image(self, x):
        return self.model.encode("image", x, normalize=False)

    def encode_text(self, x):
        return self.model.encode("text", x, normalize=False)


def _clip_benchmark_accuracy(output, target, topk=(1,)):
    """clip_benchmark 1.6.2's ``accuracy`` with ``.item()``: its ``float(1-element array)`` fails on NumPy 2."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


def test_zeroshot_equals_clip_benchmark(loaded, image_folder, tmp_path, monkeypatch):
    from clip_benchmark.metrics import zeroshot_classification
    from torchvision.datasets import ImageFolder as TVImageFolder

    monkeypatch.setattr(zeroshot_classification, "accuracy", _clip_benchmark_accuracy)

    transform = loaded.modality_transform("image")
    tv = TVImageFolder(str(image_folder), transform=lambda img: transform({"image.png": img.convert("RGB")})["image"])
    loader = torch.utils.data.DataLoader(tv, batch_size=5, shuffle=False)
    expected = zeroshot_classification.evaluate(
        _ClipBenchAdapter(loaded.model), loader, loaded.tokenizer, CLASSES, TEMPLATES, "cpu", amp=False
    )

    dataset = ImageFolder(root=image_folder, classnames=CLASSES)
    assert len(dataset) == 18 and dataset.labels() == [c for c in range(6) for _ in range(3)]
    got = ZeroShotClassification(dataset=dataset, templates=TEMPLATES).evaluate(Embedder(loaded, tmp_path))
    assert got["top1"] == pytest.approx(expected["acc1"], abs=1e-6)
    assert got["top5"] == pytest.approx(expected["acc5"], abs=1e-6)
    assert got["mean_per_class_recall"] == pytest.approx(expected["mean_per_class_recall"], abs=1e-6)
    # the random model is not at chance everywhere nor perfect: the comparison is not vacuous
    assert 0.0 < got["top5"] < 1.0


def test_retrieval_equals_clip_benchmark(loaded, caption_shards, tmp_path):
    from clip_benchmark.metrics import zeroshot_retrieval

    folder, captions = caption_shards
    dataset = ShardFolder(folder=folder)
    samples = list(dataset.samples())
    assert [s["__key__"] for s in samples] == [f"s{i:03d}" for i in range(12)]
    transform = loaded.modality_transform("image")
    images = torch.stack([transform(s)["image"] for s in samples])
    batches = [(images[i : i + 4], captions[i : i + 4]) for i in range(0, 12, 4)]
    expected = zeroshot_retrieval.evaluate(
        _ClipBenchAdapter(loaded.model), batches, loaded.tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10]
    )

    got = Retrieval(dataset=dataset).evaluate(Embedder(loaded, tmp_path))
    for k in (1, 5, 10):
        assert got[f"text2image_R{k}"] == pytest.approx(expected[f"image_retrieval_recall@{k}"], abs=1e-6)
        assert got[f"image2text_R{k}"] == pytest.approx(expected[f"text_retrieval_recall@{k}"], abs=1e-6)
    assert got["mean_recall"] == pytest.approx(np.mean([v for k, v in got.items() if "_R" in k]), abs=1e-9)
    assert sum(len(c) for c in captions) == 24  # 1, 2 or 3 captions per image, all of them scored
    assert 0.0 < got["text2image_R1"] < got["text2image_R10"] < 1.0  # not vacuous: neither at floor nor ceiling


def _gda_direct(shots_x, shots_y, test_x, clip_weights, alpha):
    """Line-by-line numpy transcription of the paper's estimator (mrflogs/ICLR24, main_few_shots.py)."""
    c = clip_weights.shape[1]
    mus = np.concatenate([shots_x[shots_y == i].mean(axis=0, keepdims=True) for i in range(c)])
    center = np.concatenate([shots_x[shots_y == i] - mus[i][None] for i in range(c)])
    cov = np.cov(center.T)  # torch's x.T.cov(): rows are variables, unbiased
    cov_inv = center.shape[1] * np.linalg.pinv((center.shape[0] - 1) * cov + np.trace(cov) * np.eye(center.shape[1]))
    ps = np.ones(c) / c
    w = np.einsum("nd,dc->cn", mus, cov_inv)
    b = np.log(ps) - np.einsum("nd,dc,nc->n", mus, cov_inv, mus) / 2
    return 100.0 * test_x @ clip_weights + alpha * (test_x @ w + b)


def test_gda_matches_direct_numpy():
    rng = np.random.default_rng(0)
    d, c, k = 16, 4, 5
    centres = M.l2_normalize(rng.normal(size=(c, d)))
    y = np.repeat(np.arange(c), k)
    x = M.l2_normalize(centres[y] + 0.3 * rng.normal(size=(c * k, d)))
    test_y = np.tile(np.arange(c), 10)
    test_x = M.l2_normalize(centres[test_y] + 0.3 * rng.normal(size=(len(test_y), d)))
    clip_weights = M.l2_normalize(centres + 0.8 * rng.normal(size=(c, d))).T
    x, test_x, clip_weights = (a.astype(np.float64) for a in (x, test_x, clip_weights))
    weights, bias = M.gda_fit(x, y, c)
    for alpha in (0.1, 1.0, 10.0):
        np.testing.assert_allclose(M.gda_logits(test_x, clip_weights, weights, bias, alpha),
                                   _gda_direct(x, y, test_x, clip_weights, alpha), rtol=1e-9, atol=1e-9)
    # GDA on 5 shots beats the noisy zero-shot classifier here, and alpha selection picks a large weight
    zs = M.topk_accuracy(100 * test_x @ clip_weights, test_y, 1)
    best = M.gda_select_alpha(test_x, test_y, clip_weights, weights, bias)
    assert M.topk_accuracy(M.gda_logits(test_x, clip_weights, weights, bias, best), test_y, 1) > zs
    with pytest.raises(ValueError, match=r"classes without shots: \[3\]"):
        M.gda_fit(x[y < 3], y[y < 3], c)


def test_gda_task_uses_k_shots(loaded, image_folder, tmp_path):
    dataset = ImageFolder(root=image_folder, classnames=CLASSES)
    embedder = Embedder(loaded, tmp_path)
    task = GDAFewShot(train=dataset, test=dataset, templates=TEMPLATES, shots=2, seed=3, alpha=1.0)
    got = task.evaluate(embedder)
    assert task.score(embedder).counts == {"shots_used": 12} and "shots_used" not in got and got["alpha"] == 1.0
    # the same numbers from the embeddings by hand
    se = embedder.samples(dataset, "image")
    shots = sample_shots(se.labels, 2, 6, 3)
    assert [int(se.labels[i]) for i in shots] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    clip_weights = M.zeroshot_classifier(embedder.texts([t.format(c=c) for c in CLASSES for t in TEMPLATES]).reshape(6, 3, -1))
    logits = _gda_direct(se.emb[shots].astype(np.float64), se.labels[shots], se.emb.astype(np.float64), clip_weights, 1.0)
    assert got["top1"] == pytest.approx(M.topk_accuracy(logits, se.labels, 1), abs=1e-12)
    assert got["zeroshot_top1"] == pytest.approx(M.topk_accuracy(100 * se.emb @ clip_weights, se.labels, 1), abs=1e-6)
    assert embedder.hits >= 2  # train and test are the same dataset: embedded once


def test_corrupt_images_are_reported_and_left_out(loaded, image_folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(image_folder, broken)
    png = broken / "green_circle" / "1.png"
    png.write_bytes(png.read_bytes()[:60])  # truncated mid-header
    (broken / "white_dot" / "9.png").write_text("not an image")
    clean = tmp_path / "clean"
    shutil.copytree(broken, clean)
    (clean / "green_circle" / "1.png").unlink()
    (clean / "white_dot" / "9.png").unlink()

    dataset = ImageFolder(root=broken, classnames=CLASSES)
    task = ZeroShotClassification(dataset=dataset, templates=TEMPLATES)
    embedder = Embedder(loaded, tmp_path / "cache")
    got = task.evaluate(embedder)
    assert [(s["path"], s["reason"].split(":")[0]) for s in embedder.skipped[dataset.name]] == [
        (str(png), "unreadable image"), (str(broken / "white_dot" / "9.png"), "unreadable image")]
    assert len(embedder.samples(dataset, "image").labels) == 17  # 19 files, 2 unreadable
    want = ZeroShotClassification(dataset=ImageFolder(root=clean, classnames=CLASSES), templates=TEMPLATES)
    assert got == want.evaluate(Embedder(loaded, tmp_path / "cache2"))
    # the skip list survives the cache: a second embedder reads it back with the embeddings
    again = Embedder(loaded, tmp_path / "cache")
    task.evaluate(again)
    assert again.misses == 0 and len(again.skipped[dataset.name]) == 2


def test_truncated_shard_is_reported_and_the_rest_read(caption_shards, tmp_path):
    import shutil

    folder, _ = caption_shards
    copy = tmp_path / "shards"
    shutil.copytree(folder, copy)
    shard = copy / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:700])  # inside the first member's data
    dataset = ShardFolder(folder=copy)
    keys = [s["__key__"] for s in dataset.samples()]
    assert keys == ["s000", "s001", "s002", "s003", "s004", "s010", "s011"]
    assert len(dataset.skipped) == 1 and dataset.skipped[0]["path"].endswith("shard-000001.tar")
    assert dataset.skipped[0]["reason"].startswith("unreadable shard:")


REAL_IMAGES = [  # (path under shared data, label, caption) -- see PROVENANCE.md
    ("biomed/medical_images/fundus/retina.jpg", "fundus", "colour fundus photograph of a normal left eye"),
    ("biomed/medical_images/pathology/ihc.png", "pathology", "immunohistochemistry of colonic glands"),
    ("remote_sensing/images/rsicd/airport_17.jpg", "aerial", "two planes are in an airport near a large parking lot ."),
    ("remote_sensing/images/rsicd/square_102.jpg", "aerial", "two buildings and some green trees are in a square ."),
    ("biomed/jats_packages/elife-19405/elife-19405-inf1.tif", "figure", "author image"),
    ("biomed/jats_packages/elife-19405/elife-19405-fig1.tif", "figure", "figure 1"),
]


def test_csv_dataset_on_real_files(loaded, shared_data, tmp_path):
    import csv

    table = tmp_path / "real.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "caption"])
        writer.writerows(REAL_IMAGES)
    dataset = CsvDataset(csv_path=table, root=shared_data, caption_column="caption")
    assert dataset.classnames == ["aerial", "figure", "fundus", "pathology"]
    assert dataset.labels() == [2, 3, 0, 0, 1, 1]
    samples = list(dataset.samples())
    fields = [next(k for k in s if k.startswith("image.")) for s in samples]
    assert fields == ["image.jpg", "image.png", "image.jpg", "image.jpg", "image.png", "image.png"]
    sizes = [(s[f].size, s[f].mode) for s, f in zip(samples, fields)]
    assert sizes == [((1411, 1411), "RGB"), ((512, 512), "RGB"), ((384, 384), "RGB"), ((384, 384), "RGB"),
                     ((661, 624), "RGB"), ((1417, 1252), "RGB")]  # the RGBA TIFF arrives as RGB
    assert samples[2]["txt"] == "two planes are in an airport near a large parking lot ."

    embedder = Embedder(loaded, tmp_path / "cache")
    zs = ZeroShotClassification(dataset=dataset, templates=["a {c} image"]).evaluate(embedder)
    assert set(zs) == {"top1", "mean_per_class_recall"}  # 4 classes: no top-5
    assert zs["top1"] in {i / 6 for i in range(7)}
    ret = Retrieval(dataset=dataset).evaluate(embedder)
    assert ret["image2text_R10"] == ret["text2image_R10"] == 1.0  # 6 items: everything is in the top 10
    emb = embedder.samples(dataset, "image")
    assert emb.emb.shape == (6, 32) and emb.present.all()
    np.testing.assert_allclose(np.linalg.norm(emb.emb, axis=1), 1.0, atol=1e-5)
