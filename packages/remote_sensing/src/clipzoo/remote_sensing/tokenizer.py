"""Train a text tokenizer from a caption corpus with Hugging Face ``tokenizers`` (BPE or WordPiece).

For when no pretrained multilingual tokenizer is at hand: the tokenizer is fitted on the corpus's own
captions (all languages), saved as ``tokenizer.json`` (+ ``tokenizer_config.json``) in a folder that
core's ``{"type": "hf", "path": DIR}`` tokenizer loads, and usable by an open_clip text tower:

- ``[PAD]`` is id 0 (open_clip's default ``pad_id``);
- every text ends with ``[EOS]``, which is added last and so has the highest id: open_clip's default
  ``argmax`` pooling picks exactly that position, as with CLIP's own end-of-text token.

:func:`open_clip_text_cfg` gives the ``text_cfg`` keys that match a trained tokenizer.

Command line::

    python -m clipzoo.remote_sensing.tokenizer shards/ captions/ucm_precomp --out tok/ --vocab-size 8000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger(__name__)

PAD, UNK, EOS = "[PAD]", "[UNK]", "[EOS]"
KINDS = ("bpe", "wordpiece")


def corpus_texts(inputs: Iterable[str | Path]) -> Iterator[str]:
    """Caption texts of shard folders (``captions.json``/``txt``), precomp folders and COCO/RSICD JSON files."""
    from clipzoo.remote_sensing.captions import precomp_splits, read_caption_json, read_precomp

    for item in inputs:
        path = Path(item)
        if (path / "manifest.json").is_file():
            yield from _shard_texts(path)
        elif path.is_dir() and precomp_splits(path):
            for split in precomp_splits(path):
                yield from (c.text for rec in read_precomp(path, split) for c in rec.captions)
        elif path.is_file() and path.suffix.lower() == ".json":
            yield from (c.text for rec in read_caption_json(path)[1] for c in rec.captions)
        else:
            raise FileNotFoundError(f"{path}: not a shard folder, a precomp folder or a caption JSON file")


def _shard_texts(folder: Path) -> Iterator[str]:
    from clipzoo.core.data.shardset import iter_samples, resolve_shard_set

    for raw in iter_samples(resolve_shard_set(folder)):
        if "captions.json" in raw:
            yield from (c["text"] for c in json.loads(raw["captions.json"]))
        elif "txt" in raw:
            yield raw["txt"].decode("utf-8")


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, *, kind: str = "bpe", vocab_size: int = 8000,
                    min_frequency: int = 2, lowercase: bool = True) -> Path:
    """Fit a ``kind`` tokenizer on ``texts`` and save it in ``out_dir``; returns the folder.

    Normalisation is NFKC (+ lowercase), so the same caption in composed/decomposed Unicode or another
    case tokenises the same way; pre-tokenisation splits on whitespace and punctuation, which suits the
    Latin/Cyrillic/Greek scripts of RS-M-CLIP's languages (CJK text falls back to characters).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in KINDS:
        raise ValueError(f"tokenizer kind must be one of {', '.join(KINDS)}, not {kind!r}")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("no caption text to train a tokenizer on")
    if kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix="</w>"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK],
                                      end_of_word_suffix="</w>", show_progress=False)
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
    else:
        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=[PAD, UNK], show_progress=False)
        tok.decoder = decoders.WordPiece()
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), *([normalizers.Lowercase()] if lowercase else [])])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok.add_special_tokens([EOS])  # added after training: the highest id, for open_clip's argmax pooling
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, eos_id)])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK, eos_token=EOS)
    fast.save_pretrained(str(out))
    log.info("trained a %s tokenizer (%d tokens) on %d captions -> %s", kind, tok.get_vocab_size(), len(texts), out)
    return out


def open_clip_text_cfg(tokenizer_dir: str | Path, context_length: int = 32) -> dict:
    """``text_cfg`` entries for an open_clip text tower fed by a tokenizer from :func:`train_tokenizer`."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    return {"vocab_size": tok.get_vocab_size(), "context_length": context_length, "pad_id": tok.token_to_id(PAD),
            "hf_tokenizer_name": str(Path(tokenizer_dir)), "pool_type": "argmax"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipzoo.remote_sensing.tokenizer",
                                     description="Train a BPE/WordPiece tokenizer on RS caption corpora.")
    parser.add_argument("inputs", nargs="+", help="shard folders, precomp folders or COCO/RSICD caption JSON files")
    parser.add_argument("--out", required=True, help="folder for tokenizer.json + tokenizer_config.json")
    parser.add_argument("--kind", choices=KINDS, default="bpe")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--min-frequency", type=int, default=2)
    parser.add_argument("--keep-case", action="store_true", help="do not lowercase")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        train_tokenizer(corpus_texts(args.inputs), args.out, kind=args.kind, vocab_size=args.vocab_size,
                        min_frequency=args.min_frequency, lowercase=not args.keep_case)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
