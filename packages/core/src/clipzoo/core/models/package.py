"""The model package: the folder a saved model lives in, defined once.

``save_pretrained`` writes it, ``load_pretrained`` builds the model from it, the registry registers and
serves it, the model card reads it. A package folder holds:

- ``config.json`` (:data:`CONFIG_NAME`): ``{"format": "clipzoo-model/1", "model": <model config>,
  "preprocess": {modality: ...}}``, the preprocessing carrying tokenizer settings, image bands and statistics;
- ``model.safetensors`` (:data:`WEIGHTS_NAME`): the state dict;
- ``tokenizer/`` (or ``tokenizer_<modality>/`` when several text modalities use one): a Hugging Face
  tokenizer's files, named in the preprocess by a path relative to the folder;
- ``train_summary.json`` (:data:`SUMMARY_NAME`, optional): what the trainer records (training config, data
  with licenses and fingerprints, final metrics), read by the model card.

The weights' sha256 (:func:`sha256_file`) identifies a package in the registry and the embedding cache.
This module owns those names and the reading and checking; it imports neither torch nor mlflow.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SUMMARY_NAME = "train_summary.json"
TOKENIZER_DIR = "tokenizer"
FORMAT = "clipzoo-model/1"
#: the files of a Hugging Face tokenizer folder that travel with a model (any of them; config.json last)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "config.json")


@dataclass
class ModelPackage:
    """A checked package folder: ``model`` (the model config), ``preprocess`` (as saved: tokenizer paths
    relative to the folder) and the trainer's ``summary``."""

    path: Path
    model: dict[str, Any]
    preprocess: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_NAME

    def weights_sha256(self) -> str:
        return sha256_file(self.weights)

    def usable_preprocess(self) -> dict[str, Any]:
        """``preprocess`` with the tokenizers saved in the folder named by absolute path (usable from anywhere).

        A tokenizer the package names as its own (``tokenizer``, ``tokenizer_<modality>``) must be inside it: a
        missing one, or a name leading out of the folder, is an error rather than a path that the tokenizer loader
        would resolve against the current directory.
        """
        preprocess = copy.deepcopy(self.preprocess)
        root = self.path.resolve()
        for modality, spec in preprocess.items():
            tok = spec.get("tokenizer") if isinstance(spec, dict) else None
            if not tok or tok.get("type") != "hf" or Path(tok["path"]).is_absolute():
                continue
            inside, parts = (self.path / tok["path"]).resolve(), Path(tok["path"]).parts
            if (parts and parts[0].startswith(TOKENIZER_DIR)) or ".." in parts:
                if not inside.is_relative_to(root) or not inside.exists():
                    raise FileNotFoundError(f"model package {self.path}: the {modality} tokenizer "
                                            f"{tok['path']!r} is not in the package; save the model again "
                                            "(clipzoo export or save_pretrained) or restore the folder")
            if inside.exists():
                tok["path"] = str(inside)
        return preprocess


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_package(folder: Path) -> bool:
    """Whether ``folder`` looks like a model package (has its config; :func:`read_package` checks the rest)."""
    return (Path(folder) / CONFIG_NAME).is_file()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def read_document(folder: str | os.PathLike) -> dict[str, Any]:
    """The package's ``config.json``, checked: a mapping with ``model`` and ``preprocess`` mappings."""
    path = Path(folder) / CONFIG_NAME
    document = _read_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("model"), dict) or not isinstance(
        document.get("preprocess"), dict
    ):
        raise ValueError(f"{path} is not a clipzoo model config: it needs 'model' and 'preprocess' mappings")
    return document


def read_package(folder: str | os.PathLike) -> ModelPackage:
    """Read and check a package folder; a clear error names what is missing or malformed."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"model package {path} does not exist (expected a save_pretrained folder)")
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (path / n).is_file()]
    if missing:
        present = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
        raise FileNotFoundError(f"{path} is not a model package: no {', '.join(missing)} (it holds {present}); "
                                f"that is not a saved clipzoo model (save_pretrained writes both)")
    document = read_document(path)
    summary_path = path / SUMMARY_NAME
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    return ModelPackage(path=path, model=document["model"], preprocess=document["preprocess"], summary=summary)


def write_document(folder: Path, model: Mapping[str, Any], preprocess: Mapping[str, Any]) -> None:
    """Write the package's ``config.json`` (sorted keys, so the same model gives the same bytes)."""
    document = {"model": model, "preprocess": preprocess, "format": FORMAT}
    (folder / CONFIG_NAME).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def tokenizer_folder(modality: str, n_tokenizers: int) -> str:
    """The folder name of ``modality``'s tokenizer inside a package holding ``n_tokenizers`` of them."""
    return TOKENIZER_DIR if n_tokenizers == 1 else f"{TOKENIZER_DIR}_{modality}"


def copy_tokenizer(source: Path, target: Path) -> None:
    """Copy a tokenizer (a folder of :data:`TOKENIZER_FILES`, or one ``tokenizer.json``) into ``target``."""
    target.mkdir(parents=True)
    if source.is_file():
        shutil.copy2(source, target / "tokenizer.json")
        return
    copied = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    for name in copied:
        shutil.copy2(source / name, target / name)
    if not copied:
        raise FileNotFoundError(f"no tokenizer files in {source} (looked for {', '.join(TOKENIZER_FILES[:-1])})")


def image_preprocess_of(path: Path) -> dict[str, Any] | None:
    """The image preprocess recorded by the package that ``path`` (a package folder or its weights file) is in;
    None for a bare weights file outside a package."""
    folder = path if path.is_dir() else path.parent
    if not (is_package(folder) and (path.is_dir() or path.name == WEIGHTS_NAME)):
        return None
    try:
        document = _read_json(folder / CONFIG_NAME)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder / CONFIG_NAME}: cannot be read as a clipzoo model config: {exc}") from None
    return (document.get("preprocess") or {}).get("image")
