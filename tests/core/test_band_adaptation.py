"""RGB -> N-band adaptation of pretrained weights (issue 12.5): RGB kernels and the RGB model's mean/std kept for the
RGB bands, the new bands' statistics declared, the initialisation of new-band kernels chosen, all recorded."""

from __future__ import annotations

import pytest
import torch

from clipzoo.core.models import create_model, load_pretrained, save_pretrained
from clipzoo.core.models.factory import OPENAI_MEAN, OPENAI_STD, adapt_patch_embedding

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 1},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
RGBN = ["red", "green", "blue", "nir"]
NIR_STATS = [0.31, 0.12]


def _rgb_model(tmp_path, mean=None, std=None):
    """A tiny RGB model with non-trivial weights saved as a clipzoo folder (its preprocess declares mean/std)."""
    cfg = dict(TINY)
    if mean is not None:
        cfg["preprocess"] = {"image": {"mean": mean, "std": std}}
    model = create_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model, save_pretrained(model, tmp_path / "rgb")


def _nband(bands, **adaptation):
    return {**TINY, "image_channels": len(bands), "preprocess": {"image": {"bands": bands}},
            "band_adaptation": adaptation}


def test_adapt_patch_embedding_each_initialisation():
    rgb = torch.randn(6, 3, 4, 4)
    bands = ["nir", "blue", "red", "green", "swir1"]
    mean = adapt_patch_embedding(rgb, bands, init="mean")
    assert mean.shape == (6, 5, 4, 4)
    assert torch.equal(mean[:, 1], rgb[:, 2]) and torch.equal(mean[:, 2], rgb[:, 0])
    assert torch.equal(mean[:, 3], rgb[:, 1])
    assert torch.allclose(mean[:, 0], rgb.mean(dim=1)) and torch.allclose(mean[:, 4], rgb.mean(dim=1))
    zeros = adapt_patch_embedding(rgb, bands, init="zeros")
    assert torch.equal(zeros[:, 0], torch.zeros(6, 4, 4)) and torch.equal(zeros[:, 2], rgb[:, 0])
    copy = adapt_patch_embedding(rgb, bands, init="copy", copy_from={"nir": "red", "swir1": "green"})
    assert torch.equal(copy[:, 0], rgb[:, 0]) and torch.equal(copy[:, 4], rgb[:, 1])
    scaled = adapt_patch_embedding(rgb, bands, init="mean", rescale=True)
    assert torch.allclose(scaled, mean * 3 / 5)
    with pytest.raises(ValueError, match="init must be one of mean, zeros, copy"):
        adapt_patch_embedding(rgb, bands, init="random")
    with pytest.raises(ValueError, match="copy_from names 'nir' <- 'purple'"):
        adapt_patch_embedding(rgb, bands, init="copy", copy_from={"nir": "purple", "swir1": "red"})
    with pytest.raises(ValueError, match="init='copy' needs copy_from for band\\(s\\) swir1"):
        adapt_patch_embedding(rgb, bands, init="copy", copy_from={"nir": "red"})
    with pytest.raises(ValueError, match="none of the bands .* is red, green or blue"):
        adapt_patch_embedding(rgb, ["nir", "swir1"], init="mean")


def test_rgb_mean_std_kept_and_new_bands_from_declared_statistics(tmp_path):
    rgb_mean, rgb_std = [0.40, 0.42, 0.39], [0.21, 0.20, 0.22]
    reference, folder = _rgb_model(tmp_path, rgb_mean, rgb_std)
    model = create_model(_nband(RGBN, init="zeros", stats={"nir": NIR_STATS}), pretrained=folder).eval()
    pre = model.preprocess["image"]
    assert pre["bands"] == RGBN and pre["channels"] == 4
    assert pre["mean"] == rgb_mean + NIR_STATS[:1] and pre["std"] == rgb_std + NIR_STATS[1:]
    assert pre["band_adaptation"] == {
        "from_channels": 3, "rgb_bands": ["red", "green", "blue"], "init": "zeros", "rescale": False,
        "mean_std_from": {"red": "pretrained RGB model", "green": "pretrained RGB model",
                          "blue": "pretrained RGB model", "nir": "band_adaptation.stats"}}
    # zeros: the RGB bands see exactly the RGB model's kernels, so any NIR gives the RGB model's embedding
    rgb_images = torch.rand(3, 3, 32, 32)
    rgbn = torch.cat([rgb_images, torch.rand(3, 1, 32, 32)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model.encode("image", rgbn), reference.encode("image", rgb_images), atol=1e-6)
    # the record travels with the saved model
    again = load_pretrained(save_pretrained(model, tmp_path / "rgbn"))
    assert again.preprocess["image"]["band_adaptation"] == pre["band_adaptation"]
    assert again.preprocess["image"]["mean"] == pre["mean"]


def test_open_clip_checkpoint_rgb_bands_take_openai_statistics(tmp_path):
    from open_clip.model import CLIP

    reference = CLIP(TINY["embed_dim"], TINY["vision_cfg"], TINY["text_cfg"])
    torch.save(reference.state_dict(), tmp_path / "rgb.pt")
    bands = ["blue", "green", "red", "nir"]  # a file in B,G,R,NIR order
    model = create_model(_nband(bands, init="copy", copy_from={"nir": "red"}, stats={"nir": NIR_STATS}),
                         pretrained=tmp_path / "rgb.pt")
    pre = model.preprocess["image"]
    assert pre["mean"] == [OPENAI_MEAN[2], OPENAI_MEAN[1], OPENAI_MEAN[0], NIR_STATS[0]]
    assert pre["std"] == [OPENAI_STD[2], OPENAI_STD[1], OPENAI_STD[0], NIR_STATS[1]]
    conv = model.towers["image"].conv1.weight.detach()
    rgb = reference.visual.conv1.weight.detach()
    assert torch.equal(conv[:, 0], rgb[:, 2]) and torch.equal(conv[:, 2], rgb[:, 0])
    assert torch.equal(conv[:, 3], rgb[:, 0])  # nir <- red
    assert pre["band_adaptation"]["copied_from"] == {"nir": "red"}


def test_new_band_statistics_from_the_model_config_when_declared(tmp_path):
    _, folder = _rgb_model(tmp_path, [0.4, 0.4, 0.4], [0.2, 0.2, 0.2])
    cfg = {**TINY, "image_channels": 4, "band_adaptation": {"init": "mean"},
           "preprocess": {"image": {"bands": RGBN, "mean": [0.5] * 4, "std": [0.25] * 4}}}
    pre = create_model(cfg, pretrained=folder).preprocess["image"]
    assert pre["mean"] == [0.4, 0.4, 0.4, 0.5] and pre["std"] == [0.2, 0.2, 0.2, 0.25]
    assert pre["band_adaptation"]["mean_std_from"]["nir"] == "model config"


def test_a_new_band_without_statistics_is_refused(tmp_path):
    _, folder = _rgb_model(tmp_path)
    with pytest.raises(ValueError, match=r"band\(s\) nir have no mean/std: give band_adaptation.stats"):
        create_model(_nband(RGBN, init="mean"), pretrained=folder)
    with pytest.raises(ValueError, match="4 band names .* for 5 image channels"):
        create_model({**_nband(RGBN, stats={"nir": NIR_STATS}), "image_channels": 5}, pretrained=folder)


def test_unnamed_bands_take_the_first_three_as_rgb(tmp_path):
    _, folder = _rgb_model(tmp_path)
    cfg = {**TINY, "image_channels": 5, "band_adaptation": {"stats": {"band4": [0.3, 0.1], "band5": [0.2, 0.1]}}}
    pre = create_model(cfg, pretrained=folder).preprocess["image"]
    assert pre["bands"] == ["red", "green", "blue", "band4", "band5"]
    assert pre["mean"] == [*OPENAI_MEAN, 0.3, 0.2] and pre["band_adaptation"]["init"] == "mean"
