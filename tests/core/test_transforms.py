"""clipzoo.core.data.transforms on real files: images (open_clip-exact), GeoTIFF bands, captions, light curves."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from clipzoo.core.data.transforms import SampleError, SampleTransform, collate
from clipzoo.core.models import get_tokenizer

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
TOKENIZER = {"type": "open_clip", "context_length": 16}


def image_pp(size=64, channels=3, mean=MEAN, std=STD, **extra):
    return {"kind": "image", "size": [size, size], "channels": channels, "mean": list(mean), "std": list(std),
            "interpolation": "bicubic", "resize_mode": "shortest", "train_crop_scale": None, **extra}


PREPROCESS = {"image": image_pp(), "text": {"kind": "text", "tokenizer": TOKENIZER}}


def test_eval_image_equals_open_clip_preprocessing(shared_data):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    reference = image_transform_v2(PreprocessCfg(size=(64, 64), mean=tuple(MEAN), std=tuple(STD)), is_train=False)
    transform = SampleTransform(PREPROCESS, train=False)
    for path in ("biomed/medical_images/fundus/retina.jpg", "remote_sensing/images/rsicd/airport_17.jpg"):
        image = Image.open(shared_data / path)
        out = transform({"__key__": "k", "image.jpg": image, "txt": "x"})
        assert out["image"].shape == (3, 64, 64)
        assert torch.allclose(out["image"], reference(image), atol=1e-6), path


def test_native_size_png_is_only_normalized(shared_data):
    image = Image.open(shared_data / "biomed/medical_images/pathology/ihc.png")  # 512x512 RGB
    out = SampleTransform({"image": image_pp(size=512)}, train=False)({"__key__": "ihc", "image.png": image})
    assert image.getpixel((0, 0)) == (156, 118, 81)
    expected = [(v / 255 - m) / s for v, m, s in zip((156, 118, 81), MEAN, STD)]
    assert out["image"][:, 0, 0].tolist() == pytest.approx(expected, abs=1e-6)
    native = SampleTransform({"image": image_pp(size=512)}, train=False)
    grey = native({"__key__": "g", "image.png": image.convert("L")})
    assert grey["image"].shape == (3, 512, 512)  # greyscale repeated to the model's three channels
    pixels = grey["image"] * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    assert torch.allclose(pixels[0], pixels[1], atol=1e-6) and torch.allclose(pixels[0], pixels[2], atol=1e-6)


def test_multispectral_geotiff_bands(shared_data):
    import rasterio

    with rasterio.open(shared_data / "remote_sensing/geotiff/import-tiff-test2.tiff") as src:
        bands = src.read()  # float32 reflectance, 5 x 17 x 11
    mean, std = [0.2] * 5, [0.1] * 5
    native = {"image": {**image_pp(channels=5, mean=mean, std=std), "size": [17, 11]}}
    out = SampleTransform(native, train=False)({"__key__": "tile", "image.npy": bands})
    assert out["image"].shape == (5, 17, 11)
    first_pixel = (0.2168, 0.2195, 0.3467, 0.1574, 0.1769)  # band values at row 0, column 0
    assert out["image"][:, 0, 0].tolist() == pytest.approx([(v - 0.2) / 0.1 for v in first_pixel], abs=1e-5)
    resized = SampleTransform({"image": image_pp(size=8, channels=5, mean=mean, std=std)}, train=False)
    assert resized({"__key__": "tile", "image.npy": bands})["image"].shape == (5, 8, 8)
    holes = bands.copy()
    holes[2, 3, 4] = np.nan  # nodata becomes the band mean (0 after normalisation)
    assert SampleTransform(native, train=False)({"__key__": "t", "image.npy": holes})["image"][2, 3, 4] == 0
    with pytest.raises(SampleError, match="'tile'.*5 channels, the model expects 3"):
        SampleTransform({"image": image_pp(size=8)}, train=False)({"__key__": "tile", "image.npy": bands})


def test_uint8_hwc_array_is_scaled(shared_data):
    import rasterio

    with rasterio.open(shared_data / "remote_sensing/geotiff/rgbn_suba.tif") as src:
        rgbn = src.read().transpose(1, 2, 0)  # uint8 H x W x 4 (R, G, B, NIR)
    pp = {"image": {**image_pp(channels=4, mean=[0] * 4, std=[1] * 4), "size": [212, 276]}}
    out = SampleTransform(pp, train=False)({"__key__": "rgbn", "image.npy": rgbn})
    assert out["image"].shape == (4, 212, 276)
    assert torch.allclose(out["image"], torch.from_numpy(rgbn).permute(2, 0, 1).float() / 255)


def _ucm_captions(shared_data):
    lines = (shared_data / "remote_sensing/captions/ucm_precomp/test_caps.txt").read_text().splitlines()
    assert len(lines) == 1050
    return [{"text": t, "lang": "en"} for t in lines[:5]]


def test_captions_first_in_eval_sampled_deterministically_in_train(shared_data):
    captions = _ucm_captions(shared_data)
    tokenize = get_tokenizer(TOKENIZER)
    image = Image.new("RGB", (64, 64))
    sample = {"__key__": "ucm_91", "image.png": image, "captions.json": captions}
    out = SampleTransform(PREPROCESS, train=False)(sample)
    assert out["text"].tolist() == tokenize(["There is a piece of farmland ."])[0].tolist()
    assert out["__key__"] == "ucm_91"

    def picks(seed, epoch=0):
        transform = SampleTransform(PREPROCESS, train=True, seed=seed)
        transform.set_epoch(epoch)
        return [tuple(transform({**sample, "__key__": f"k{i}"})["text"].tolist()) for i in range(40)]

    candidates = {tuple(t) for t in tokenize([c["text"] for c in captions]).tolist()}
    first = picks(0)
    assert set(first) <= candidates and len(set(first)) == 5  # every caption gets used
    assert picks(0) == first  # deterministic given seed and key
    assert picks(1) != first and picks(0, epoch=1) != first
    single = SampleTransform(PREPROCESS, train=True, seed=0)({"__key__": "one", "image.png": image, "txt": "a farm"})
    assert single["text"].tolist() == tokenize(["a farm"])[0].tolist()


def test_random_resized_crop_is_seeded_by_key(shared_data):
    image = Image.open(shared_data / "remote_sensing/images/rsicd/airport_17.jpg")
    pp = {"image": image_pp(train_crop_scale=[0.3, 1.0])}
    a = SampleTransform(pp, train=True, seed=3)({"__key__": "a", "image.jpg": image})["image"]
    again = SampleTransform(pp, train=True, seed=3)({"__key__": "a", "image.jpg": image})["image"]
    other = SampleTransform(pp, train=True, seed=3)({"__key__": "b", "image.jpg": image})["image"]
    evaluated = SampleTransform(pp, train=False)({"__key__": "a", "image.jpg": image})["image"]
    assert a.shape == (3, 64, 64) and torch.equal(a, again)
    assert not torch.equal(a, other) and not torch.equal(a, evaluated)


def test_kepler_light_curve_gaps_become_mask(shared_data):
    from astropy.io import fits

    with fits.open(shared_data / "astro/lightcurves/kepler/kplr011442793-2010009091648_llc.fits") as hdul:
        data = hdul[1].data
        curve = np.stack([np.asarray(data["TIME"], float), np.asarray(data["PDCSAP_FLUX"], float)], axis=1)
    assert curve.shape == (1021, 2)
    pp = {"lightcurve": {"kind": "array", "shape": [1024, 2]}}
    out = SampleTransform(pp, train=False)({"__key__": "kic11442793_q4", "lightcurve.npy": curve})
    assert out["lightcurve"].shape == (1024, 2) and out["lightcurve_mask"].shape == (1024,)
    assert int(out["lightcurve_mask"].sum()) == 1008  # 13 NaN flux cadences + 3 padding rows are invalid
    assert torch.isfinite(out["lightcurve"]).all()
    assert out["lightcurve"][~out["lightcurve_mask"]].abs().max() == 0
    # a quality mask from the shard combines with the NaNs; a crop keeps the first window in eval
    quality = np.ones(1021, dtype=bool)
    quality[:100] = False
    short = {"lightcurve": {"kind": "array", "shape": [500, 2]}}
    out = SampleTransform(short, train=False)({"__key__": "q", "lightcurve.npy": curve, "lightcurve_mask.npy": quality})
    assert out["lightcurve"].shape == (500, 2) and int(out["lightcurve_mask"][:100].sum()) == 0
    assert out["lightcurve"][100, 1].item() == pytest.approx(float(curve[100, 1]))


def test_missing_modality_zero_filled_and_feature_masks():
    pp = {"spectrum": {"kind": "array", "shape": [64, 1]}, "metadata": {"kind": "array", "shape": [4]}}
    features = np.array([1.5, np.nan, -2.0, 3.0], dtype=np.float32)
    out = SampleTransform(pp, train=False)({"__key__": "s", "metadata.npy": features, "cls": 3})
    assert out["spectrum"].shape == (64, 1) and not out["spectrum_mask"].any()
    assert out["metadata"].tolist() == [1.5, 0.0, -2.0, 3.0]
    assert out["metadata_mask"].tolist() == [True, False, True, True]
    assert out["cls"].item() == 3 and out["cls"].dtype == torch.long
    with pytest.raises(SampleError, match="'bad'.*expects \\[4\\]"):
        SampleTransform(pp, train=False)({"__key__": "bad", "metadata.npy": np.zeros(5)})


def test_errors_name_the_sample_and_field():
    transform = SampleTransform(PREPROCESS, train=False)
    with pytest.raises(SampleError, match="'no_image'.*image.png.*it has \\['json', 'txt'\\]"):
        transform({"__key__": "no_image", "txt": "x", "json": {}})
    with pytest.raises(SampleError, match="'empty'.*no captions"):
        transform({"__key__": "empty", "image.png": Image.new("RGB", (8, 8)), "captions.json": []})


def test_collate_and_pickle_for_workers():
    transform = SampleTransform(PREPROCESS, train=True, seed=0)
    raw = [{"__key__": f"k{i}", "image.png": Image.new("RGB", (70, 64), (i, 0, 0)), "txt": f"red {i}"}
           for i in range(3)]
    samples = [transform(sample) for sample in raw]
    batch = collate(samples)
    assert batch["image"].shape == (3, 3, 64, 64) and batch["text"].shape == (3, 16)
    assert batch["__key__"] == ["k0", "k1", "k2"]
    clone = pickle.loads(pickle.dumps(transform))  # what a DataLoader worker receives
    again = clone({"__key__": "k1", "image.png": Image.new("RGB", (70, 64), (1, 0, 0)), "txt": "red 1"})
    assert torch.equal(again["text"], samples[1]["text"]) and torch.equal(again["image"], samples[1]["image"])
    mixed = collate([samples[0], {**samples[1], "cls": torch.tensor(1)}])  # a field one sample lacks is dropped
    assert sorted(mixed) == ["__key__", "image", "text"] and mixed["image"].shape == (2, 3, 64, 64)
    numbers = collate([{"n": 1, "a": np.zeros(2)}, {"n": 2, "a": np.ones(2)}])
    assert numbers["n"].tolist() == [1, 2] and numbers["a"].tolist() == [[0, 0], [1, 1]]
    with pytest.raises(ValueError, match="empty batch"):
        collate([])


def test_shards_written_by_core_feed_an_nmodal_model(shared_data, tmp_path):
    """Writer -> webdataset decode -> SampleTransform -> collate -> model: the field names agree end to end."""
    import webdataset as wds

    from clipzoo.core.data.writer import ShardWriter, safe_key
    from clipzoo.core.models import create_model

    model = create_model({
        "embed_dim": 16,
        "towers": {
            "image": {"type": "open_clip_vision", "image_size": 32, "patch_size": 8, "width": 32, "head_width": 16,
                      "layers": 1},
            "text": {"type": "open_clip_text", "context_length": 16, "width": 32, "heads": 2, "layers": 1},
            "lightcurve": {"type": "sequence_transformer", "in_channels": 2, "width": 16, "layers": 1, "heads": 2,
                           "max_len": 50},
        },
        "loss": {"type": "pairwise"},
    })
    ihc = Image.open(shared_data / "biomed/medical_images/pathology/ihc.png")
    captions = _ucm_captions(shared_data)
    with ShardWriter(tmp_path / "shards", max_count=2) as writer:
        for i in range(3):
            curve = np.random.default_rng(i).normal(size=(40 + i, 2)).astype(np.float32)
            writer.write({
                "__key__": safe_key("ihc", i),
                "image.png": ihc.crop((i * 64, 0, i * 64 + 128, 128)),
                "captions.json": captions,
                "lightcurve.npy": curve,
                "lightcurve_mask.npy": np.arange(40 + i) % 7 != 0,
                "cls": i,
                "json": {"source": "ihc.png"},
            })
    shards = sorted(str(p) for p in (tmp_path / "shards").glob("*.tar"))
    assert len(shards) == 2
    transform = SampleTransform(model.preprocess, train=True, seed=0)
    samples = [transform(s) for s in wds.WebDataset(shards, shardshuffle=False).decode("pil")]
    batch = collate(samples)
    assert batch["__key__"] == ["ihc_0", "ihc_1", "ihc_2"] and batch["cls"].tolist() == [0, 1, 2]
    assert batch["image"].shape == (3, 3, 32, 32) and batch["text"].shape == (3, 16)
    assert batch["lightcurve"].shape == (3, 50, 2)
    assert batch["lightcurve_mask"].sum(1).tolist() == [34, 35, 36]  # every 7th cadence flagged, then padding
    out = model(batch)
    assert sorted(out["features"]) == ["image", "lightcurve", "text"] and out["masks"]["lightcurve"].all()
