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
    """Hand-made embeddings with known answers: image ``i`` is the one-hot ``e_i``; a caption in a language other
    than ``ranked_lang`` is ``e_i`` of its own image (found first both ways), or ``e_(1-i)`` with ``flip`` (two
    images: always second); a ``ranked_lang`` caption of image ``i`` puts ``i`` other images first, then its own,
    so text->image rank of the true image is exactly ``i`` (0-based)."""

    def __init__(self, ranked_lang: str = "", flip: bool = False):
        self.ranked_lang, self.flip = ranked_lang, flip
        self.model = type("M", (), {"text_modality": "text"})()

    def samples(self, dataset, modality):
        n = sum(1 for _ in dataset.samples())
        return SampleEmbeddings(np.eye(n, dtype=np.float32), np.ones(n, dtype=bool), -np.ones(n, dtype=np.int64))

    def captions(self, dataset, modality=None):
        n = sum(1 for _ in dataset.samples())
        eye = np.eye(n, dtype=np.float32)
        embs, owners = [], []
        for i, s in enumerate(dataset.samples()):
            for c in s["captions.json"]:
                if c["lang"] == self.ranked_lang:
                    emb = sum((1 - 0.05 * k) * eye[(i + 1 + k) % n] for k in range(i)) + (0.975 - 0.05 * i) * eye[i]
                else:
                    emb = eye[1 - i] if self.flip else eye[i]
                embs.append(emb)
                owners.append(i)
        return np.stack(embs), np.asarray(owners)


def _hits_by_brute_force(sims: np.ndarray, owners: np.ndarray, k: int) -> tuple[float, float]:
    """(image->text, text->image) recall@k by a plain loop over ``sims`` [captions, images]."""
    t2i = np.mean([np.sum(sims[j] > sims[j, owners[j]]) < k for j in range(len(owners))])
    i2t = np.mean([min(np.sum(sims[:, i] > sims[j, i]) for j in np.flatnonzero(owners == i)) < k
                   for i in range(sims.shape[1])])
    return float(i2t), float(t2i)


@pytest.fixture()
def twelve_images(tmp_path, rs_data):
    """12 image files (copies of the two real RSICD jpgs; the hand-made embedder ignores pixels), one English and
    one German caption each, as precomp test splits."""
    images = tmp_path / "images12"
    images.mkdir()
    names = [f"scene_{i:02d}" for i in range(12)]
    for i, name in enumerate(names):
        shutil.copy(rs_data / "images" / "rsicd" / ("airport_17.jpg" if i % 2 == 0 else "square_102.jpg"),
                    images / f"{name}.jpg")
    folders = []
    for lang, text in (("en", "scene number {i} ."), ("de", "Szene Nummer {i} .")):
        folder = tmp_path / f"rsicd_{lang}_precomp"
        folder.mkdir()
        (folder / "test_caps.txt").write_text("".join(text.format(i=i) + "\n" for i in range(12)))
        (folder / "test_filename.txt").write_text("".join(f"{n}.tif\n" for n in names))
        folders.append(folder)
    return images, folders


def test_multilingual_retrieval_scores_each_language(twelve_images):
    images, (en, de) = twelve_images
    ds = caption_image_set([en, de], images, lang=["en", "de"])
    assert len(ds) == 12
    metrics = multilingual_retrieval(ds).evaluate(_Embedder(ranked_lang="de"))
    for k in (1, 5, 10):
        assert metrics[f"en/image2text_R{k}"] == 1.0 and metrics[f"en/text2image_R{k}"] == 1.0
    # the German caption of image i ranks its image at position i: R@k = k / 12
    assert [metrics[f"de/text2image_R{k}"] for k in (1, 5, 10)] == pytest.approx([1 / 12, 5 / 12, 10 / 12])
    embedder = _Embedder(ranked_lang="de")
    de_view = language_view(ds, "de")
    caps, owners = embedder.captions(de_view)
    for k in (1, 5, 10):
        i2t, t2i = _hits_by_brute_force(caps @ np.eye(12).T, owners, k)
        assert metrics[f"de/image2text_R{k}"] == pytest.approx(i2t) and metrics[f"de/text2image_R{k}"] == t2i
    de_recalls = [metrics[f"de/{d}_R{k}"] for d in ("image2text", "text2image") for k in (1, 5, 10)]
    assert metrics["de/mean_recall"] == pytest.approx(np.mean(de_recalls)) and metrics["de/mean_recall"] < 0.8
    assert metrics["mean_recall"] == pytest.approx((1.0 + np.mean(de_recalls)) / 2)
    single = multilingual_retrieval(caption_image_set(en, images)).evaluate(_Embedder(ranked_lang="de"))
    assert single["mean_recall"] == 1.0 and "en/mean_recall" not in single


def test_registered_tasks_run_on_a_tiny_rgb_model(rsicd_pair, tmp_path):
    """Through core's harness: the plugin's task names, a real (random) tiny model, real images."""
    from clipzoo.core.bench.harness import run_benchmark
    from clipzoo.core.models.factory import create_model, save_pretrained
    from clipzoo.core.models import LoadedModel

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
    # the same numbers from the model's own embeddings, computed here (R@5/R@10 over 2 images / 4 captions are
    # certain, so R@1 and top-1 carry the check)
    from PIL import Image

    pictures = [Image.open(images / n).convert("RGB") for n in ("airport_17.jpg", "square_102.jpg")]
    img = loaded.encode_images(pictures)
    txt = loaded.encode_texts([AIRPORT_17, AIRPORT_17, SQUARE_102, SQUARE_102])
    sims = txt @ img.T  # [4 captions, 2 images]
    owners = np.array([0, 0, 1, 1])
    i2t, t2i = _hits_by_brute_force(sims, owners, 1)
    assert ret["image2text_R1"] == pytest.approx(i2t) and ret["text2image_R1"] == pytest.approx(t2i)
    assert ret["image2text_R5"] == 1.0 and ret["text2image_R10"] == 1.0
    zs = results["tasks"]["remote_sensing/scene-zeroshot"]
    assert zs["settings"]["templates"] == list(RS_TEMPLATES)
    prompts = loaded.encode_texts([t.format(c=c) for c in ("airport", "square") for t in RS_TEMPLATES])
    prompts = prompts.reshape(2, len(RS_TEMPLATES), -1)
    prompts /= np.linalg.norm(prompts, axis=-1, keepdims=True)
    classifier = prompts.mean(axis=1)
    classifier /= np.linalg.norm(classifier, axis=-1, keepdims=True)
    predicted = (img @ classifier.T).argmax(axis=1)
    assert zs["metrics"]["top1"] == pytest.approx(float(np.mean(predicted == np.array([0, 1]))))
    with pytest.raises(DatasetError, match="not UC Merced's Images folder"):
        from clipzoo.remote_sensing.tasks import ucm_zeroshot_task

        ucm_zeroshot_task(root=scenes)
    with pytest.raises(DatasetError, match="needs captions="):
        from clipzoo.remote_sensing.tasks import retrieval_task

        retrieval_task(images=str(images))


def test_retrieval_from_ingested_multilingual_shards(rsicd_pair, tmp_path):
    """captions ingest (--images, two languages merged) -> shard folder -> per-language retrieval."""
    from rs_helpers import make_options

    from clipzoo.core.ingest import run_ingest
    from clipzoo.remote_sensing.sources import CaptionsSource
    from clipzoo.remote_sensing.tasks import retrieval_task

    images, en, de = rsicd_pair
    opts = make_options(CaptionsSource, images=images, lang="en,de", corpus="rsicd,rsicd")
    summary = run_ingest(CaptionsSource(opts), [en, de], tmp_path / "shards", progress=False)
    assert summary["samples_written"] == 2 and summary["counters"]["captions_by_lang"] == {"de": 2, "en": 4}
    task = retrieval_task(shards=str(tmp_path / "shards"), ks=(1,))  # two images: R@5 and R@10 would be certain
    assert caption_languages(task.dataset) == ["de", "en"]
    en_right = task.evaluate(_Embedder(ranked_lang="de"))  # German captions rank their image 1st, then 2nd
    assert en_right["en/mean_recall"] == 1.0
    assert (en_right["de/text2image_R1"], en_right["de/image2text_R1"]) == (0.5, 0.5)
    flipped = task.evaluate(_Embedder(flip=True))  # every caption points at the other image
    assert flipped["en/mean_recall"] == 0.0 and flipped["de/mean_recall"] == 0.0 and flipped["mean_recall"] == 0.0
    assert en_right["mean_recall"] == pytest.approx((1.0 + 0.5) / 2)


def test_multilingual_retrieval_carries_chance_and_intervals_per_language(twelve_images):
    """Through core's scoring: each language's metrics get chance (k/12 for text->image) and a bootstrap interval
    over the images, equal to a direct numpy bootstrap of the per-image hits with the same resample indices."""
    from clipzoo.core.bench import metrics as M
    from clipzoo.core.bench.harness import score_task

    images, (en, de) = twelve_images
    task = multilingual_retrieval(caption_image_set([en, de], images, lang=["en", "de"]))
    entry = score_task(task, _Embedder(ranked_lang="de"), resamples=500, seed=3)
    assert entry["n_items"] == 12
    assert entry["chance"]["de/text2image_R5"] == pytest.approx(5 / 12)
    assert entry["interval"]["en/image2text_R1"] == [1.0, 1.0]
    idx = M.resample_indices(12, 500, 3)
    for k in (1, 5, 10):
        hits = (np.arange(12) < k).astype(float)  # German caption i finds its image at rank i
        expected = np.percentile(hits[idx].mean(axis=1), [2.5, 97.5])
        assert entry["interval"][f"de/text2image_R{k}"] == pytest.approx(list(expected))
    low, high = entry["interval"]["mean_recall"]
    assert low < entry["metrics"]["mean_recall"] < high
