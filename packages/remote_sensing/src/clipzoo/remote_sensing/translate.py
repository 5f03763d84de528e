"""Offline caption translation with a local MarianMT / NLLB model (transformers), to add languages.

RS-M-CLIP trains one multilingual text tower on RSICD/RSITMD/UCM captions machine-translated into
several languages. :class:`Translator` does that step offline: it loads a seq2seq model saved with
``save_pretrained`` from a local folder (never a hub download) and translates a list of captions,
deduplicating them first (RSICD repeats captions a lot). The model is named in every sample it touched
(:meth:`Translator.describe`).

Command line (translate a precomp split into a new precomp folder, filenames copied)::

    python -m clipzoo.remote_sensing.translate MODEL_DIR captions/ucm_precomp out/ucm_precomp_de --lang de
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)


class TranslationError(RuntimeError):
    """The translation model cannot be used (missing, not a seq2seq model, ...): message says what to do."""


class Translator:
    """A local seq2seq translation model.

    ``target_code`` is the token NLLB/M2M-style models force as first output token (``"deu_Latn"``);
    ``source_code`` sets the tokenizer's ``src_lang`` for them. MarianMT models are one language pair
    each and need neither.
    """

    def __init__(self, model_path: str | Path, target_lang: str, *, target_code: str | None = None,
                 source_code: str | None = None, batch_size: int = 16, max_length: int = 128, device: str = "cpu"):
        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise TranslationError(
                f"translation model not found at {path}: give a local folder saved with save_pretrained()"
                " (config.json, model weights, tokenizer files) of a MarianMT/NLLB model; nothing is downloaded"
            )
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=True).to(device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise TranslationError(f"cannot load a seq2seq translation model from {path}: {exc}") from None
        if source_code:
            self.tokenizer.src_lang = source_code
        self.forced_bos = None
        if target_code:
            tok_id = self.tokenizer.convert_tokens_to_ids(target_code)
            if tok_id is None or tok_id == self.tokenizer.unk_token_id:
                raise TranslationError(f"{path}: the tokenizer has no language token {target_code!r}")
            self.forced_bos = tok_id
        self.path = path.resolve()
        self.target_lang = target_lang
        self.target_code = target_code
        self.batch_size = batch_size
        limit = getattr(self.model.config, "max_position_embeddings", None)  # decoder positions are finite
        self.max_length = min(max_length, limit - 2) if limit else max_length
        self.device = device

    @property
    def name(self) -> str:
        return self.path.name

    def describe(self) -> dict:
        return {"model": self.name, "path": str(self.path), "model_type": self.model.config.model_type,
                "target_lang": self.target_lang, **({"target_code": self.target_code} if self.target_code else {})}

    def translate(self, texts: Sequence[str], progress: bool = True) -> list[str]:
        """Translations of ``texts`` in order (greedy decoding; identical inputs translated once)."""
        import torch
        from tqdm import tqdm

        unique = list(dict.fromkeys(texts))
        done: dict[str, str] = {}
        batches = range(0, len(unique), self.batch_size)
        for start in tqdm(batches, desc=f"translate -> {self.target_lang}", unit="batch", disable=not progress):
            batch = unique[start:start + self.batch_size]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length).to(self.device)
            enc.pop("token_type_ids", None)
            kwargs = {"forced_bos_token_id": self.forced_bos} if self.forced_bos is not None else {}
            with torch.inference_mode():
                out = self.model.generate(**enc, max_new_tokens=self.max_length, num_beams=1, do_sample=False,
                                          **kwargs)
            for src, text in zip(batch, self.tokenizer.batch_decode(out, skip_special_tokens=True)):
                done[src] = text.strip()
        return [done[t] for t in texts]


def translate_precomp(translator: Translator, folder: str | Path, out: str | Path, splits: Sequence[str] = ()) -> list[Path]:
    """Write ``out/{split}_caps.txt`` (translated) and a copy of ``{split}_filename.txt`` for each split.

    Files are written under a temporary name and renamed, so an interrupted run leaves no half file.
    """
    from clipzoo.remote_sensing.captions import precomp_splits, read_precomp

    folder, out = Path(folder), Path(out)
    splits = list(splits) or precomp_splits(folder)
    if not splits:
        raise TranslationError(f"{folder}: no *_caps.txt + *_filename.txt pair to translate")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in splits:
        read_precomp(folder, split)  # validates alignment before any model time is spent
        lines = (folder / f"{split}_caps.txt").read_text(encoding="utf-8").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        translated = translator.translate([line.strip() for line in lines])
        target = out / f"{split}_caps.txt"
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        tmp.write_text("".join(t.replace("\n", " ") + "\n" for t in translated), encoding="utf-8")
        os.replace(tmp, target)
        shutil.copyfile(folder / f"{split}_filename.txt", out / f"{split}_filename.txt")
        written.append(target)
        log.info("translated %d captions of %s/%s into %s with %s", len(lines), folder, split, target, translator.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipzoo.remote_sensing.translate",
                                     description="Translate an AMFMN precomp caption folder with a local model.")
    parser.add_argument("model", help="local MarianMT/NLLB folder (save_pretrained layout)")
    parser.add_argument("folder", help="precomp folder holding {split}_caps.txt + {split}_filename.txt")
    parser.add_argument("out", help="output precomp folder")
    parser.add_argument("--lang", required=True, help="language tag of the output captions (e.g. de)")
    parser.add_argument("--target-code", help="NLLB-style forced target token (e.g. deu_Latn)")
    parser.add_argument("--source-code", help="NLLB-style source language (e.g. eng_Latn)")
    parser.add_argument("--split", action="append", default=[], help="split(s) to translate (default: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128, help="max tokens per translation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        tr = Translator(args.model, args.lang, target_code=args.target_code, source_code=args.source_code,
                        batch_size=args.batch_size, max_length=args.max_length)
        translate_precomp(tr, args.folder, args.out, args.split)
    except (TranslationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
