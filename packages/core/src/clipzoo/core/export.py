"""Export a clipzoo model for the tools people already run: open_clip, Hugging Face transformers, or plain.

``clipzoo export MODEL_URI --format open_clip|hf|plain --out DIR`` (MODEL_URI: a model folder,
``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, resolved by :func:`clipzoo.core.registry.load_model`):

- ``open_clip``: open_clip's ``local-dir:`` layout. ``open_clip_config.json`` holds ``model_cfg`` (the open_clip
  architecture, clipzoo's own keys such as ``loss`` removed) and ``preprocess_cfg``; the weights are
  ``open_clip_model.safetensors`` with open_clip's ``CLIP`` state-dict names (``visual.*``, ``transformer.*``,
  ``token_embedding.weight``, ...). ``open_clip.create_model_and_transforms("local-dir:DIR")`` and
  ``open_clip.get_tokenizer("local-dir:DIR")`` load it, as does ``clip_benchmark --model local-dir:DIR``.
- ``hf``: ``transformers.CLIPModel`` + ``CLIPProcessor`` files (``config.json``, ``model.safetensors``,
  ``preprocessor_config.json``, tokenizer files) for models made of an open_clip ViT and an open_clip text
  transformer with the CLIP tokenizer. The weights map one to one (fused qkv split into q/k/v, class and
  position embeddings, ln_pre/ln_post, projections transposed); what does not map exactly is refused.
- ``plain``: clipzoo's own package (``config.json`` + ``model.safetensors``, tokenizer files alongside), which
  :func:`clipzoo.core.load` reads back. It holds any model: N-modal, multispectral, Hugging Face text towers.

Every export is checked before it is kept: it is loaded back with the target library and its image and text
embeddings are compared with clipzoo's (max abs difference of the L2-normalised embeddings <= 1e-5 by
default). Nothing is left in ``--out`` by an export that was refused or failed that check.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

FORMATS = ("open_clip", "hf", "plain")
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
TOLERANCE = 1e-5
#: open_clip's CLIP BPE: 49408 ids, <start_of_text> 49406, <end_of_text> 49407
CLIP_VOCAB_SIZE = 49408
HF_BOS, HF_EOS = "<|startoftext|>", "<|endoftext|>"
#: captions the checks tokenise and embed (tokens must equal open_clip's on each)
CHECK_CAPTIONS = (
    "a photo of a dog.",
    "An aerial image of an airport with two runways",
    "H&E stained tissue, 40x: nuclei (blue) and stroma",
    "fundus photograph of the left eye, optic disc at 3 o'clock",
)
#: keys clipzoo adds to a model config that open_clip's model_cfg does not take
CLIPZOO_CONFIG_KEYS = ("loss", "preprocess", "max_logit_scale", "image_channels", "preprocess_cfg")


class ExportError(ValueError):
    """A model that cannot be exported in the asked format, or an export that did not reproduce the model."""


# -- entry point --------------------------------------------------------------------------------
def export_model(
    model_ref: Any,
    fmt: str,
    out: str | os.PathLike,
    *,
    tracking_uri: str | None = None,
    overwrite: bool = False,
    tolerance: float = TOLERANCE,
) -> Path:
    """Export ``model_ref`` (a URI, a model folder or a :class:`LoadedModel`) as ``fmt`` into ``out``.

    Refuses (``ExportError``, nothing written) a format that cannot hold the model, and an ``out`` that
    is a non-empty folder unless ``overwrite``. Writes into a temporary sibling folder, checks the export
    against the model, then moves it into place.
    """
    from clipzoo.core.models.inference import LoadedModel
    from clipzoo.core.registry.loading import load_model

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ExportError(f"{out} exists and is not an empty folder: choose another --out or pass --overwrite")
    loaded = model_ref if isinstance(model_ref, LoadedModel) else load_model(model_ref, tracking_uri=tracking_uri,
                                                                             device="cpu")
    model = loaded.model.to("cpu").eval()
    writer = {"open_clip": write_open_clip, "hf": write_hf, "plain": write_plain}[fmt]
    check = {"open_clip": _check_open_clip_mappable, "hf": _check_hf_mappable, "plain": lambda m: None}[fmt]
    check(model)  # before anything is written

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.export{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        writer(model, tmp)
        diffs = {"open_clip": verify_open_clip, "hf": verify_hf, "plain": verify_plain}[fmt](model, tmp)
        worst = max(diffs.values())
        if worst > tolerance:
            raise ExportError(
                f"the {fmt} export does not reproduce {loaded.label}: max abs embedding difference "
                + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()) + f" > {tolerance:g}; nothing was written"
            )
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s as %s to %s (max abs embedding difference %s)", loaded.label, fmt, out,
             ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    return out


# -- what each format can hold ----------------------------------------------------------------------
def _open_clip_parts(model, fmt: str) -> tuple[Any, Any]:
    """The image and text towers of an open_clip-architecture image-text model, or a refusal saying why not."""
    from open_clip.transformer import TextTransformer

    from clipzoo.core.models.factory import is_open_clip_config

    plain = "use --format plain (clipzoo's own package; clipzoo.core.load reads it)"
    if not is_open_clip_config(model.config):
        raise ExportError(
            f"{fmt} holds image-text models only; this model has towers {', '.join(model.modalities)}: {plain}"
        )
    image, text = model.towers["image"], model.towers["text"]
    if getattr(image, "in_channels", 3) != 3:
        raise ExportError(
            f"{fmt} holds RGB image towers only; this one takes {image.in_channels} bands: {plain}"
        )
    if not isinstance(text, TextTransformer):
        raise ExportError(
            f"{fmt} cannot rebuild this {type(text).__name__} text tower offline (a Hugging Face encoder): {plain}"
        )
    tok = model.preprocess.get("text", {}).get("tokenizer", {})
    if tok.get("type", "open_clip") != "open_clip":
        raise ExportError(f"{fmt} export needs open_clip's CLIP tokenizer; this model uses {tok.get('path')}: {plain}")
    return image, text


def _check_open_clip_mappable(model) -> None:
    _open_clip_parts(model, "open_clip")


def _activation(block, fmt: str) -> str:
    from open_clip.transformer import QuickGELU
    from torch import nn

    act = block.mlp.gelu
    if isinstance(act, QuickGELU):
        return "quick_gelu"
    if isinstance(act, nn.GELU) and act.approximate == "none":
        return "gelu"
    raise ExportError(f"{fmt}: MLP activation {act!r} has no Hugging Face CLIP equivalent")


def _check_blocks(transformer, where: str) -> str:
    """Plain pre-norm blocks (LayerNorm, torch MultiheadAttention, no layer scale, no cross-attention)."""
    from open_clip.transformer import ResidualAttentionBlock
    from torch import nn

    acts = set()
    for i, block in enumerate(transformer.resblocks):
        why = None
        if type(block) is not ResidualAttentionBlock:
            why = f"block type {type(block).__name__}"
        elif not isinstance(block.attn, nn.MultiheadAttention) or block.attn.in_proj_weight is None:
            why = "attention without a fused qkv projection"
        elif not (isinstance(block.ls_1, nn.Identity) and isinstance(block.ls_2, nn.Identity)):
            why = "layer scale (ls_init_value)"
        elif hasattr(block, "ln_1_kv"):
            why = "cross-attention"
        elif not all(isinstance(n, nn.LayerNorm) and n.elementwise_affine for n in (block.ln_1, block.ln_2)):
            why = "a norm other than LayerNorm"
        if why:
            raise ExportError(f"hf: {where} block {i} has {why}, which Hugging Face CLIP does not have")
        acts.add(_activation(block, "hf"))
    if len(acts) != 1:
        raise ExportError(f"hf: {where} mixes activations {sorted(acts)}")
    return acts.pop()


def _check_hf_mappable(model) -> dict[str, Any]:
    """The Hugging Face CLIP config for ``model``, or ExportError naming the first part that does not map."""
    from open_clip.transformer import VisionTransformer
    from torch import nn

    image, text = _open_clip_parts(model, "hf")
    if type(image) is not VisionTransformer:
        raise ExportError(f"hf holds ViT image towers only; this one is {type(image).__name__}: use --format open_clip")
    why = None
    if image.attn_pool is not None:
        why = "attentional pooling"
    elif image.pool_type != "tok":
        why = f"pool_type {image.pool_type!r} (Hugging Face CLIP pools the class token)"
    elif image.final_ln_after_pool:
        why = "final_ln_after_pool"
    elif not isinstance(image.ln_pre, nn.LayerNorm):
        why = "no ln_pre"
    elif image.proj is None:
        why = "no output projection"
    elif image.conv1.bias is not None:
        why = "a patch-embedding bias"
    elif image.image_size[0] != image.image_size[1] or image.patch_size[0] != image.patch_size[1]:
        why = f"a non-square image {tuple(image.image_size)} or patch {tuple(image.patch_size)}"
    if why:
        raise ExportError(f"hf: the ViT has {why}, which Hugging Face CLIP does not have: use --format open_clip")
    vision_act = _check_blocks(image.transformer, "vision")

    why = None
    if text.cls_emb is not None:
        why = "a CLS embedding (embed_cls)"
    elif text.pool_type != "argmax":
        why = f"pool_type {text.pool_type!r} (Hugging Face CLIP pools the end-of-text token)"
    elif text.attn_mask is None:
        why = "no causal mask"
    elif text.vocab_size != CLIP_VOCAB_SIZE:
        why = f"vocab_size {text.vocab_size} (the CLIP tokenizer has {CLIP_VOCAB_SIZE})"
    elif text.text_projection is None:
        why = "no output projection"
    elif isinstance(text.text_projection, nn.Linear) and text.text_projection.bias is not None:
        why = "a projection bias"
    elif not isinstance(text.ln_final, nn.LayerNorm):
        why = "a final norm other than LayerNorm"
    if why:
        raise ExportError(f"hf: the text transformer has {why}, which Hugging Face CLIP does not have: "
                          "use --format open_clip")
    text_act = _check_blocks(text.transformer, "text")

    if model.logit_bias is not None:
        raise ExportError("hf: CLIPModel has no logit bias, and this model has one (a SigLIP loss): its logits would "
                          "differ; use --format open_clip")
    v_block, t_block = image.transformer.resblocks[0], text.transformer.resblocks[0]
    spec = model.preprocess["image"]
    if spec.get("resize_mode", "shortest") == "longest":
        raise ExportError("hf: CLIPImageProcessor cannot resize by the longest side and pad (resize_mode 'longest'): "
                          "use --format open_clip")
    if spec.get("interpolation", "bicubic") not in ("bicubic", "bilinear", "nearest"):
        raise ExportError(f"hf: interpolation {spec.get('interpolation')!r} has no CLIPImageProcessor equivalent")
    return {
        "projection_dim": model.embed_dim,
        "logit_scale_init_value": float(effective_logit_scale(model)),
        "text_config": {
            "vocab_size": text.vocab_size,
            "hidden_size": text.width,
            "intermediate_size": t_block.mlp.c_fc.out_features,
            "num_hidden_layers": len(text.transformer.resblocks),
            "num_attention_heads": t_block.attn.num_heads,
            "max_position_embeddings": text.context_length,
            "hidden_act": text_act,
            "layer_norm_eps": t_block.ln_1.eps,
            "projection_dim": model.embed_dim,
            "bos_token_id": CLIP_VOCAB_SIZE - 2,
            "eos_token_id": CLIP_VOCAB_SIZE - 1,
            "pad_token_id": CLIP_VOCAB_SIZE - 1,
        },
        "vision_config": {
            "hidden_size": image.transformer.width,
            "intermediate_size": v_block.mlp.c_fc.out_features,
            "num_hidden_layers": len(image.transformer.resblocks),
            "num_attention_heads": v_block.attn.num_heads,
            "image_size": int(image.image_size[0]),
            "patch_size": int(image.patch_size[0]),
            "num_channels": 3,
            "hidden_act": vision_act,
            "layer_norm_eps": v_block.ln_1.eps,
            "projection_dim": model.embed_dim,
        },
    }


def effective_logit_scale(model):
    """The log temperature clipzoo's forward uses: the parameter clamped to ``[0, max_logit_scale]``.

    open_clip and transformers apply the stored value unclamped, so the export stores the clamped one.
    """
    return model.logit_scale.detach().clamp(0, model.max_logit_scale)


# -- open_clip ------------------------------------------------------------------------------------
def open_clip_model_cfg(model) -> dict[str, Any]:
    """open_clip's ``model_cfg`` for a clipzoo open_clip-format config: clipzoo's own keys removed."""
    from clipzoo.core.models.towers import TEXT_EXTRA_KEYS, VISION_EXTRA_KEYS

    config = copy.deepcopy(model.config)
    cfg = {k: v for k, v in config.items() if k not in CLIPZOO_CONFIG_KEYS}
    cfg["vision_cfg"] = {k: v for k, v in config["vision_cfg"].items() if k not in VISION_EXTRA_KEYS}
    cfg["text_cfg"] = {k: v for k, v in config["text_cfg"].items() if k not in TEXT_EXTRA_KEYS}
    if model.logit_bias is not None:
        cfg["init_logit_bias"] = float(model.logit_bias.detach())  # so open_clip builds the parameter it loads
    return cfg


def open_clip_preprocess_cfg(model) -> dict[str, Any]:
    """open_clip's ``preprocess_cfg`` from the model's image preprocessing (size, mean/std, resize)."""
    spec = model.preprocess["image"]
    size = [int(s) for s in spec["size"]]
    return {
        "size": size[0] if size[0] == size[1] else size,
        "mode": "RGB",
        "mean": [float(m) for m in spec["mean"]],
        "std": [float(s) for s in spec["std"]],
        "interpolation": spec.get("interpolation", "bicubic"),
        "resize_mode": spec.get("resize_mode", "shortest"),
        "fill_color": 0,
    }


def open_clip_state_dict(model, custom_text: bool = False) -> dict[str, Any]:
    """``towers.image.*`` -> ``visual.*``; ``towers.text.*`` -> CLIP's top-level text names (or ``text.*``)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("towers.image."):
            key = "visual." + key[len("towers.image."):]
        elif key.startswith("towers.text."):
            key = ("text." if custom_text else "") + key[len("towers.text."):]
        elif key == "logit_scale":
            value = effective_logit_scale(model)
        elif key != "logit_bias":
            raise ExportError(f"open_clip: no open_clip name for weight {key!r}")
        out[key] = value.detach().contiguous()
    return out


def write_open_clip(model, directory: Path) -> None:
    from safetensors.torch import save_file

    _check_open_clip_mappable(model)
    cfg = open_clip_model_cfg(model)
    custom_text = bool(cfg.get("custom_text")) or bool(cfg["text_cfg"].get("embed_cls"))
    if custom_text:
        cfg["custom_text"] = True  # CLIP drops the text CLS embedding; CustomTextCLIP keeps the tower whole
    document = {"model_cfg": cfg, "preprocess_cfg": open_clip_preprocess_cfg(model)}
    (directory / OPEN_CLIP_CONFIG).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    save_file(open_clip_state_dict(model, custom_text), str(directory / OPEN_CLIP_WEIGHTS))


def verify_open_clip(model, directory: Path) -> dict[str, float]:
    """Load the export with open_clip (model, transforms, tokenizer) and compare embeddings with ``model``."""
    import open_clip
    import torch

    from clipzoo.core.models import get_tokenizer

    name = f"local-dir:{directory}"
    oc_model, _, _ = open_clip.create_model_and_transforms(name, device="cpu")
    oc_model.eval()
    oc_tokens = open_clip.get_tokenizer(name)(list(CHECK_CAPTIONS))
    tokens = get_tokenizer(model.preprocess["text"])(list(CHECK_CAPTIONS))
    if not torch.equal(oc_tokens, tokens):
        raise ExportError("open_clip's tokenizer for the export gives other token ids than the model's; "
                          "nothing was written")
    images = _check_images(model)
    with torch.no_grad():
        return {
            "image": _max_diff(oc_model.encode_image(images, normalize=True), model.encode("image", images)),
            "text": _max_diff(oc_model.encode_text(tokens, normalize=True), model.encode("text", tokens)),
        }


# -- Hugging Face ---------------------------------------------------------------------------------
def _split_qkv(prefix: str, block, out: dict[str, Any]) -> None:
    weight, bias = block.attn.in_proj_weight.detach(), block.attn.in_proj_bias.detach()
    for name, w, b in zip(("q_proj", "k_proj", "v_proj"), weight.chunk(3, dim=0), bias.chunk(3, dim=0)):
        out[f"{prefix}.self_attn.{name}.weight"] = w.contiguous()
        out[f"{prefix}.self_attn.{name}.bias"] = b.contiguous()
    out[f"{prefix}.self_attn.out_proj.weight"] = block.attn.out_proj.weight.detach()
    out[f"{prefix}.self_attn.out_proj.bias"] = block.attn.out_proj.bias.detach()
    for src, dst in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2")):
        norm = getattr(block, src)
        out[f"{prefix}.{dst}.weight"], out[f"{prefix}.{dst}.bias"] = norm.weight.detach(), norm.bias.detach()
    for src, dst in (("c_fc", "fc1"), ("c_proj", "fc2")):
        linear = getattr(block.mlp, src)
        out[f"{prefix}.mlp.{dst}.weight"] = linear.weight.detach()
        out[f"{prefix}.mlp.{dst}.bias"] = linear.bias.detach()


def _norm(out: dict[str, Any], name: str, norm) -> None:
    out[f"{name}.weight"], out[f"{name}.bias"] = norm.weight.detach(), norm.bias.detach()


def hf_state_dict(model) -> dict[str, Any]:
    """open_clip ViT + text transformer weights under ``transformers.CLIPModel``'s names.

    open_clip keeps q/k/v fused in ``attn.in_proj_*`` ([3W, W], q first) and projections as ``x @ proj``
    ([W, D]); Hugging Face has separate ``q/k/v_proj`` Linear layers and ``nn.Linear`` projections
    ([D, W]), hence the split and the transpose. Everything else is a rename.
    """
    from torch import nn

    image, text = model.towers["image"], model.towers["text"]
    out: dict[str, Any] = {}
    v = "vision_model"
    out[f"{v}.embeddings.class_embedding"] = image.class_embedding.detach()
    out[f"{v}.embeddings.patch_embedding.weight"] = image.conv1.weight.detach()
    out[f"{v}.embeddings.position_embedding.weight"] = image.positional_embedding.detach()
    _norm(out, f"{v}.pre_layrnorm", image.ln_pre)  # sic: transformers' name
    for i, block in enumerate(image.transformer.resblocks):
        _split_qkv(f"{v}.encoder.layers.{i}", block, out)
    _norm(out, f"{v}.post_layernorm", image.ln_post)
    out["visual_projection.weight"] = image.proj.detach().t()
    t = "text_model"
    out[f"{t}.embeddings.token_embedding.weight"] = text.token_embedding.weight.detach()
    out[f"{t}.embeddings.position_embedding.weight"] = text.positional_embedding.detach()
    for i, block in enumerate(text.transformer.resblocks):
        _split_qkv(f"{t}.encoder.layers.{i}", block, out)
    _norm(out, f"{t}.final_layer_norm", text.ln_final)
    proj = text.text_projection
    out["text_projection.weight"] = (proj.weight if isinstance(proj, nn.Linear) else proj.t()).detach()
    out["logit_scale"] = effective_logit_scale(model).reshape(())
    return {k: v.contiguous().clone() for k, v in out.items()}


def clip_bpe_vocab() -> tuple[dict[str, int], list[str]]:
    """``vocab.json`` and ``merges.txt`` contents of the CLIP BPE, derived from open_clip's bundled vocabulary.

    open_clip's SimpleTokenizer builds its encoder from ``bpe_simple_vocab_16e6.txt.gz`` (byte tokens, the
    same with ``</w>``, the merges, two specials); transformers' CLIPTokenizer takes the same ids as
    ``vocab.json`` and the same merges, with the specials spelt ``<|startoftext|>``/``<|endoftext|>``.
    """
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    specials = {"<start_of_text>": HF_BOS, "<end_of_text>": HF_EOS}
    vocab = {specials.get(token, token): int(index) for token, index in tok.encoder.items()}
    merges = [f"{a} {b}" for (a, b), _ in sorted(tok.bpe_ranks.items(), key=lambda item: item[1])]
    if len(vocab) != CLIP_VOCAB_SIZE or vocab[HF_EOS] != CLIP_VOCAB_SIZE - 1:
        raise ExportError(f"open_clip's bundled BPE has {len(vocab)} tokens, expected {CLIP_VOCAB_SIZE}")
    return vocab, merges


def write_hf_tokenizer(directory: Path, context_length: int):
    """Write the CLIP BPE as vocab.json + merges.txt (made offline) and return the matching CLIPTokenizer.

    Saving the returned tokenizer (or a processor holding it) adds tokenizer.json and tokenizer_config.json.
    """
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe_vocab()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    pairs = [tuple(m.split(" ")) for m in merges]
    return CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=context_length)


def hf_image_processor(model):
    """A CLIPImageProcessor doing the model's eval preprocessing (shortest-side resize + centre crop, or squash)."""
    from transformers import CLIPImageProcessor

    spec = model.preprocess["image"]
    height, width = (int(s) for s in spec["size"])
    resample = {"nearest": 0, "bilinear": 2, "bicubic": 3}[spec.get("interpolation", "bicubic")]
    squash = spec.get("resize_mode", "shortest") == "squash"
    return CLIPImageProcessor(
        do_resize=True,
        size={"height": height, "width": width} if squash else {"shortest_edge": height},
        resample=resample,
        do_center_crop=not squash,
        crop_size={"height": height, "width": width},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[float(m) for m in spec["mean"]],
        image_std=[float(s) for s in spec["std"]],
        do_convert_rgb=True,
    )


def write_hf(model, directory: Path) -> None:
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    config = CLIPConfig(**_check_hf_mappable(model))
    hf_model = CLIPModel(config).eval()
    result = hf_model.load_state_dict(hf_state_dict(model), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ExportError(f"hf: weights do not fit CLIPModel: missing {missing[:6]}, unexpected "
                          f"{result.unexpected_keys[:6]}")
    with _quiet_transformers():
        hf_model.save_pretrained(str(directory))
    tokenizer = write_hf_tokenizer(directory, model.towers["text"].context_length)
    image_processor = hf_image_processor(model)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(directory))
    image_processor.save_pretrained(str(directory))  # preprocessor_config.json, where transformers 4.x looks


def verify_hf(model, directory: Path) -> dict[str, float]:
    """Load the export with transformers and compare embeddings; the tokens must equal open_clip's."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from clipzoo.core.models import get_tokenizer

    with _quiet_transformers():
        hf_model = CLIPModel.from_pretrained(str(directory)).eval()
        processor = CLIPProcessor.from_pretrained(str(directory), backend="pil")
    context_length = model.towers["text"].context_length
    encoded = processor(text=list(CHECK_CAPTIONS), padding="max_length", truncation=True,
                        max_length=context_length, return_tensors="pt")
    tokens = get_tokenizer(model.preprocess["text"])(list(CHECK_CAPTIONS))
    if not hf_tokens_match(encoded["input_ids"], encoded["attention_mask"], tokens):
        raise ExportError("the exported Hugging Face tokenizer gives other token ids than open_clip's; "
                          "nothing was written")
    images = _check_images(model)
    with torch.no_grad():
        hf_image = hf_model.get_image_features(pixel_values=images)
        hf_text = hf_model.get_text_features(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
        hf_image = getattr(hf_image, "pooler_output", hf_image)  # transformers 5 returns an output object
        hf_text = getattr(hf_text, "pooler_output", hf_text)
        return {
            "image": _max_diff(torch.nn.functional.normalize(hf_image, dim=-1), model.encode("image", images)),
            "text": _max_diff(torch.nn.functional.normalize(hf_text, dim=-1), model.encode("text", tokens)),
        }


def hf_tokens_match(input_ids, attention_mask, open_clip_tokens) -> bool:
    """HF ids equal open_clip's where attended; open_clip pads with 0, the HF CLIP tokenizer with <|endoftext|>."""
    import torch

    mask = attention_mask.bool()
    return bool(torch.equal(input_ids[mask], open_clip_tokens[mask]) and (open_clip_tokens[~mask] == 0).all())


# -- plain ----------------------------------------------------------------------------------------
def write_plain(model, directory: Path) -> None:
    from clipzoo.core.models import save_pretrained

    directory.rmdir()  # save_pretrained writes its folder atomically itself
    save_pretrained(model, directory)


def verify_plain(model, directory: Path) -> dict[str, float]:
    """Load the package back with clipzoo and compare every modality's embedding of the same inputs."""
    import torch

    from clipzoo.core.models import load_pretrained

    again = load_pretrained(directory).eval()
    diffs = {}
    with torch.no_grad():
        for modality, (x, mask) in _check_inputs(model).items():
            diffs[modality] = _max_diff(again.encode(modality, x, mask=mask), model.encode(modality, x, mask=mask))
    return diffs


# -- check inputs -----------------------------------------------------------------------------------
def _check_images(model):
    import torch

    spec = model.preprocess["image"]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(3, int(spec.get("channels", 3)), *(int(s) for s in spec["size"]), generator=generator)


def _check_inputs(model) -> dict[str, tuple[Any, Any]]:
    """Seeded inputs for every modality: images, tokenised captions, arrays of the declared shape."""
    import torch

    from clipzoo.core.models import get_tokenizer

    generator = torch.Generator().manual_seed(0)
    out: dict[str, tuple[Any, Any]] = {}
    for modality, spec in model.preprocess.items():
        kind = spec.get("kind")
        if kind == "image":
            size = [int(s) for s in spec["size"]]
            out[modality] = (torch.randn(3, int(spec.get("channels", 3)), *size, generator=generator), None)
        elif kind == "text":
            out[modality] = (get_tokenizer(spec)(list(CHECK_CAPTIONS)), None)
        elif spec.get("shape") and all(isinstance(s, int) for s in spec["shape"]):
            shape = [int(s) for s in spec["shape"]]
            out[modality] = (torch.randn(3, *shape, generator=generator), None)
    if not out:
        raise ExportError(f"cannot build check inputs for modalities {model.modalities}")
    return out


def _quiet_transformers():
    from clipzoo.core.models.towers import _quiet_transformers as quiet

    return quiet()  # transformers' per-file progress bars and load reports: keep the export's log readable


def _max_diff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


# -- command line ---------------------------------------------------------------------------------
LOAD_HINTS: Mapping[str, Callable[[Path], str]] = {
    "open_clip": lambda d: f'open_clip.create_model_and_transforms("local-dir:{d}"); '
                           f"clip_benchmark eval --model_type open_clip --model local-dir:{d} ...",
    "hf": lambda d: f'transformers.CLIPModel.from_pretrained("{d}"); '
                    f'CLIPProcessor.from_pretrained("{d}", backend="pil")',
    "plain": lambda d: f'clipzoo.core.load("{d}")',
}


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export",
        help="export a model for open_clip, Hugging Face transformers, or as a plain clipzoo package",
        description="Write MODEL (models:/NAME@ALIAS, models:/NAME/VERSION or a model folder) in another library's "
        "layout. open_clip: open_clip_config.json + open_clip_model.safetensors, loadable as 'local-dir:DIR' (also by "
        "clip_benchmark). hf: transformers CLIPModel + CLIPProcessor files (open_clip ViT + text transformer models "
        "only). plain: clipzoo's package (any model). The export is loaded back with the target library and must give "
        "the same embeddings (max abs difference <= 1e-5) before it is kept; nothing is written otherwise.",
    )
    p.add_argument("model", help="models:/NAME@ALIAS, models:/NAME/VERSION, or a model package folder")
    p.add_argument("--format", "-f", required=True, choices=FORMATS, dest="export_format",
                   help="open_clip (local-dir: layout), hf (transformers CLIPModel), plain (clipzoo package)")
    p.add_argument("--out", "-o", required=True, type=Path, help="output folder (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--tracking-uri", help="MLflow store (default MLFLOW_TRACKING_URI or sqlite under CLIPZOO_HOME)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import sys

    from clipzoo.core.registry.errors import RegistryError

    try:
        out = export_model(args.model, args.export_format, args.out, tracking_uri=args.tracking_uri,
                           overwrite=args.overwrite)
    except (ExportError, RegistryError, FileNotFoundError) as exc:
        print(f"clipzoo export: error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {args.model} as {args.export_format} to {out}")
    print(f"  load it with: {LOAD_HINTS[args.export_format](out.resolve())}")
    return 0
