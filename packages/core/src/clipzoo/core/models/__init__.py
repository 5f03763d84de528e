"""Contrastive models: a set of named towers projecting into one embedding space.

``create_model`` builds a :class:`ContrastiveModel` from a clipzoo model-config name, a JSON path, a
dict, or an open_clip architecture name; ``save_pretrained``/``load_pretrained`` round-trip it with its
preprocessing; ``get_tokenizer`` turns the model's text preprocessing into a tokenizer.

Kept import-light: torch and open_clip are imported when one of these names is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ContrastiveModel": "clipzoo.core.models.factory",
    "create_model": "clipzoo.core.models.factory",
    "load_config": "clipzoo.core.models.factory",
    "load_weights": "clipzoo.core.models.factory",
    "save_pretrained": "clipzoo.core.models.factory",
    "load_pretrained": "clipzoo.core.models.factory",
    "minilm_path": "clipzoo.core.models.factory",
    "get_tokenizer": "clipzoo.core.models.tokenizers",
    "register_builtin_towers": "clipzoo.core.models.towers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
