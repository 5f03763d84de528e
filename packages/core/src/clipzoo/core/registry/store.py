"""The registry's name for :mod:`clipzoo.core.tracking` (the MLflow store: URI, client, experiments).

Kept so ``from clipzoo.core.registry import store`` and ``store.setup_mlflow(...)`` go on working.
"""

from clipzoo.core.tracking import (
    DEFAULT_EXPERIMENT,
    clipzoo_home,
    ensure_experiment,
    get_client,
    local_artifact_root,
    setup_mlflow,
    tracking_uri,
)

__all__ = ["DEFAULT_EXPERIMENT", "clipzoo_home", "ensure_experiment", "get_client", "local_artifact_root",
           "setup_mlflow", "tracking_uri"]
