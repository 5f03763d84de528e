"""Model registry on MLflow: register trained model packages, load them back ready to use, promote.

Import-light: names resolve lazily (``from clipzoo.core.registry import load_model`` imports the
submodule, which itself imports mlflow/torch only inside its functions).
"""

from __future__ import annotations

from clipzoo.core._lazy import lazy_getattr

_EXPORTS = {
    "tracking_uri": "store",
    "setup_mlflow": "store",
    "get_client": "store",
    "clipzoo_home": "store",
    "ensure_experiment": "store",
    "load_model": "loading",
    "resolve_package": "loading",
    "register_model": "client",
    "list_models": "client",
    "show_model": "client",
    "promote": "client",
    "set_alias": "client",
    "PromotionRefused": "errors",
    "RegistryError": "errors",
    "render_model_card": "card",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)
