"""Contrastive models: a set of named towers projecting into one embedding space.

``create_model`` builds a :class:`ContrastiveModel` from a clipzoo model-config name, a JSON path, a
dict, or an open_clip architecture name (``factory``); ``save_pretrained``/``load_pretrained`` round-trip it
with its preprocessing as a model package (``package`` defines the folder); ``get_tokenizer`` turns the model's
text preprocessing into a tokenizer (``tokenizers``); :class:`LoadedModel` embeds with a loaded package
(``inference``); local Hugging Face folders are found by ``local``.

Kept import-light: torch and open_clip are imported when one of these names is first used.
"""

from __future__ import annotations

from clipzoo.core._lazy import lazy_getattr

_EXPORTS = {
    "ContrastiveModel": "factory",
    "create_model": "factory",
    "load_config": "factory",
    "load_weights": "factory",
    "save_pretrained": "factory",
    "load_pretrained": "factory",
    "minilm_path": "local",
    "resolve_local_model": "local",
    "get_tokenizer": "tokenizers",
    "LoadedModel": "inference",
    "ModelPackage": "package",
    "register_builtin_towers": "towers",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)
