"""RS benchmark tasks: retrieval sets from caption files + images, per-language scoring, scene zero-shot."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from clipzoo.core.bench.cache import SampleEmbeddings
from clipzoo.core.bench.datasets import DatasetError
from clipzoo.remote_sensing.tasks import (
    RS_TEMPLATES,
    caption_image_set,
    caption_languages,
    language_view,
    multilingual_retrieval,
    readable_classname,
)

AIRPORT_17 = "two planes are in an airport near a large parking lot ."
SQUARE_102 = "two buildings and some green trees are in a square ."


@pytest.fixture()
def rsicd_pair(tmp_path, rs_data):
    """The two real RSICD images with their PROVENANCE captions, as a precomp test split (+ German lines)."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("airport_17.jpg", "square_102.jpg"):
        shutil.copy(rs_data / "images" / "rsicd" / name, images)
    en = tmp_path / "rsicd_precomp"
    en.mkdir()
    (en / "test_caps.txt").write_text("\n".join([AIRPORT_17] * 2 + [SQUARE_102] * 2) + "\n")
    (en / "test_filename.txt").write_text("airport_17.tif\nairport_17.tif\nsquare_102.tif\nsquare_102.tif\n")
    de = tmp_path / "rsicd_de_precomp"
    de.mkdir()
    (de / "test_caps.txt").write_text("Zwei Flugzeuge stehen auf einem Flughafen .\nZwei Gebäude an einem Platz .\n")
    (de / "test_filename.txt").write_text("airport_17.tif\nsquare_102.tif\n")
    return images, en, de


def test_readable_classnames():
    assert readable_classname("denseresidential") == "dense residential"
    assert readable_classname("DenseResidential") == "dense residential"
    assert readable_classname("BareLand") == "bare land"
    assert readable_classname("storage_tanks") == "storage tanks"
    assert readable_classname("airplane") == "airplane"
    assert RS_TEMPLATES[0].format(c="beach") == "a satellite photo of beach."


def test_caption_image_set_resolves_images_and_fails_on_missing(rsicd_pair, tmp_path):
    images, en, de = rsicd_pair
    ds = caption_image_set(en, images)
    samples = list(ds.samples())
    assert len(ds) == 2 and [s["__key__"] for s in samples] == ["test_airport_17", "test_square_102"]
    assert samples[0]["image.jpg"].size == (384, 384)
    assert samples[0]["captions.json"] == [{"text": AIRPORT_17, "lang": "en"}] * 2
    fp = ds.fingerprint()
    assert fp == caption_image_set(en, images).fingerprint()
    (images / "square_102.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) named by the captions are not under .*square_102.tif"):
        caption_image_set(en, images)
    assert len(caption_image_set(en, images, allow_missing=True)) == 1


def test_language_views(rsicd_pair):
    images, en, de = rsicd_pair
    both = caption_image_set([en, de], images, lang=["en", "de"])
    assert len(both) == 2  # one item per image, captions of both files merged
    first = next(both.samples())
    assert [c["lang"] for c in first["captions.json"]] == ["en", "en", "de"]
    assert caption_languages(both) == ["de", "en"]
    view = language_view(both, "de")
    assert [s["captions.json"] for s in view.samples()][1] == [{"text": "Zwei Gebäude an einem Platz .", "lang": "de"}]
    assert view.fingerprint() != both.fingerprint()
    assert list(language_view(both, "fr").samples()) == []
    with pytest.raises(DatasetError, match="3 language tags for 2 caption files"):
        caption_image_set([en, de], images, lang=["en", "de", "fr"])


class _Embedder:
    """Hand-made embeddings: each image is a one-hot vector; captions point at the image chosen per language."""

    def __init__(self, wrong_lang: str):
        self.wrong_lang = wrong_lang
        self.model = type("M", (), {"text_modality": "text"})()

    def samples(self, dataset, modality):
        n = sum(1 for _ in dataset.samples())
        return SampleEmbeddings(np.eye(n, 4, dtype=np.float32), np.ones(n, dtype=bool), -np.ones(n, dtype=np.int64))

    def captions(self, dataset, modality=None):
        embs, owners = [], []
        for i, s in enumerate(dataset.samples()):
            for c in s["captions.json"]:
                target = 1 - i if c["lang"] == self.wrong_lang else i
                embs.append(np.eye(4, dtype=np.float32)[target])
                owners.append(i)
        return np.stack(embs), np.asarray(owners)


def test_multilingual_retrieval_scores_each_language(rsicd_pair):
    images, en, de = rsicd_pair
    ds = caption_image_set([en, de], images, lang=["en", "de"])
    metrics = multilingual_retrieval(ds).evaluate(_Embedder(wrong_lang="de"))
    assert metrics["en/image2text_R1"] == 1.0 and metrics["en/text2image_R1"] == 1.0
    assert metrics["de/image2text_R1"] == 0.0 and metrics["de/text2image_R5"] == 1.0  # 2 images: R@5 is certain
    assert metrics["de/mean_recall"] == pytest.approx(4 / 6)
    assert metrics["mean_recall"] == pytest.approx((1.0 + 4 / 6) / 2)
    single = multilingual_retrieval(caption_image_set(en, images)).evaluate(_Embedder(wrong_lang="de"))
    assert single["mean_recall"] == 1.0 and "en/mean_recall" not in single


def test_registered_tasks_run_on_a_tiny_rgb_model(rsicd_pair, tmp_path):
    """Through core's harness: the plugin's task names, a real (random) tiny model, real images."""
    from clipzoo.core.bench.harness import run_benchmark
    from clipzoo.core.models.factory import create_model, save_pretrained
    from clipzoo.core.registry.loading import LoadedModel

    images, en, de = rsicd_pair
    scenes = tmp_path / "scenes"
    for cls, name in (("airport", "airport_17.jpg"), ("square", "square_102.jpg")):
        (scenes / cls).mkdir(parents=True)
        shutil.copy(images / name, scenes / cls)
    model = create_model({"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 16,
                                                           "head_width": 8, "layers": 1},
                          "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}})
    loaded = LoadedModel.from_package(save_pretrained(model, tmp_path / "model"), device="cpu")
    results = run_benchmark(loaded, ["remote_sensing/retrieval", "remote_sensing/scene-zeroshot"], log=False,
                            cache_dir=tmp_path / "cache", print_table=False, task_options={
                                "remote_sensing/retrieval": {"captions": [str(en)], "images": str(images)},
                                "remote_sensing/scene-zeroshot": {"root": str(scenes)}})
    ret = results["tasks"]["remote_sensing/retrieval"]["metrics"]
    assert set(ret) == {f"{a}2{b}_R{k}" for a, b in (("image", "text"), ("text", "image")) for k in (1, 5, 10)} | {
        "mean_recall"}
    assert ret["image2text_R5"] == 1.0  # only 4 captions
    zs = results["tasks"]["remote_sensing/scene-zeroshot"]
    assert zs["settings"]["templates"] == list(RS_TEMPLATES) and 0.0 <= zs["metrics"]["top1"] <= 1.0
    with pytest.raises(DatasetError, match="not UC Merced's Images folder"):
        from clipzoo.remote_sensing.tasks import ucm_zeroshot_task

        ucm_zeroshot_task(root=scenes)
    with pytest.raises(DatasetError, match="needs captions="):
        from clipzoo.remote_sensing.tasks import retrieval_task

        retrieval_task(images=str(images))


def test_retrieval_from_ingested_multilingual_shards(rsicd_pair, tmp_path):
    """captions ingest (--images, two languages merged) -> shard folder -> per-language retrieval."""
    from conftest import make_options

    from clipzoo.core.ingest import run_ingest
    from clipzoo.remote_sensing.sources import CaptionsSource
    from clipzoo.remote_sensing.tasks import retrieval_task

    images, en, de = rsicd_pair
    opts = make_options(CaptionsSource, images=images, lang="en,de", corpus="rsicd,rsicd")
    summary = run_ingest(CaptionsSource(opts), [en, de], tmp_path / "shards", progress=False)
    assert summary["samples_written"] == 2 and summary["counters"]["captions_by_lang"] == {"de": 2, "en": 4}
    task = retrieval_task(shards=str(tmp_path / "shards"))
    assert caption_languages(task.dataset) == ["de", "en"]
    metrics = task.evaluate(_Embedder(wrong_lang="de"))
    assert metrics["en/mean_recall"] == 1.0 and metrics["de/image2text_R1"] == 0.0
    assert metrics["mean_recall"] == pytest.approx((1.0 + 4 / 6) / 2)
