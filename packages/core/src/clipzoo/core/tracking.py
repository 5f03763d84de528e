"""Where clipzoo's MLflow tracking and Model Registry live: the one place that resolves and sets the URI.

:func:`tracking_uri` is the one function that decides the URI (an explicit ``--tracking-uri`` / ``run.tracking_uri``,
else ``$MLFLOW_TRACKING_URI``, else the local store); the pipeline, the trainer, the harness and the registry pass
their argument to it (through :func:`get_client` / :func:`setup_mlflow`) and never read the environment themselves.

It sits below both the trainer and the registry (``clipzoo.core.registry.store`` re-exports it), so training
does not import the registry package to log its metrics.

By default a local sqlite store ``sqlite:///<CLIPZOO_HOME>/mlflow.db`` with artifacts under
``<CLIPZOO_HOME>/mlartifacts`` (``CLIPZOO_HOME`` defaults to ``~/.clipzoo``). ``MLFLOW_TRACKING_URI``
wins when set, so a team points everything at its tracking server. The registry URI is always the
tracking URI (MLflow's default), so runs and model versions sit in the same store.

mlflow is imported inside functions only: importing it costs seconds, and the CLI must stay fast.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "clipzoo"


def clipzoo_home(home: str | Path | None = None) -> Path:
    """``home`` if given, else ``$CLIPZOO_HOME``, else ``~/.clipzoo``."""
    if home is None:
        home = os.environ.get("CLIPZOO_HOME") or Path.home() / ".clipzoo"
    return Path(home).expanduser().resolve()


def tracking_uri(uri: str | None = None, *, home: str | Path | None = None) -> str:
    """The tracking (and registry) URI: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the local sqlite store."""
    if uri:
        return str(uri)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{clipzoo_home(home) / 'mlflow.db'}"


def local_artifact_root(uri: str) -> Path:
    """Artifacts of a local sqlite store live next to the database: ``<db folder>/mlartifacts``."""
    return Path(uri[len("sqlite:///"):]).parent / "mlartifacts"


def _is_local_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///")


class LocalStoreSetup:
    """Creates the folder and schema of local sqlite stores, once per database file per process.

    MLflow creates (and migrates) the tables when a store is first opened, which takes seconds, and two
    processes doing that at once on a fresh file collide ("duplicate column"); so the first opening holds a
    file lock, and this object remembers which files it has set up. That memory is a cache, not behaviour:
    setting up a ready store again is a no-op under the lock, and a file that has gone since (the store was
    deleted while the process runs) is set up again. One instance, :data:`LOCAL_STORES`, is shared by the
    trainer, the registry and the harness, because they open the same store many times in one process.
    """

    def __init__(self) -> None:
        self._ready: set[Path] = set()

    def needed(self, db_path: Path) -> bool:
        """Whether ``db_path`` still has to be set up in this process."""
        return db_path not in self._ready or not db_path.is_file()

    def prepare(self, uri: str) -> None:
        """Set up the store of ``uri`` (a ``sqlite:///`` URI) unless this process already has."""
        db_path = Path(uri[len("sqlite:///"):])
        if not self.needed(db_path):
            return
        db_path.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with FileLock(str(db_path) + ".lock", timeout=300):
            self._create(uri)
        self._ready.add(db_path)

    def _create(self, uri: str) -> None:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

        TrackingStore(uri, local_artifact_root(uri).as_uri())
        RegistryStore(uri)


LOCAL_STORES = LocalStoreSetup()


def get_client(uri: str | None = None, *, home: str | Path | None = None):
    """An ``mlflow.MlflowClient`` bound to the store (tracking and registry on the same URI)."""
    from mlflow import MlflowClient

    resolved = tracking_uri(uri, home=home)
    if _is_local_sqlite(resolved):
        LOCAL_STORES.prepare(resolved)
    return MlflowClient(tracking_uri=resolved, registry_uri=resolved)


def ensure_experiment(
    name: str = DEFAULT_EXPERIMENT,
    *,
    uri: str | None = None,
    home: str | Path | None = None,
    artifact_location: str | Path | None = None,
) -> str:
    """The id of experiment ``name``, created if missing (safe when several processes race to create it).

    In a local sqlite store the experiment's artifacts go under ``<db folder>/mlartifacts/<name>``
    (``<CLIPZOO_HOME>/mlartifacts/<name>`` for the default store)
    unless ``artifact_location`` says otherwise; on a tracking server the server decides.
    """
    from mlflow.exceptions import MlflowException

    resolved = tracking_uri(uri, home=home)
    client = get_client(resolved)
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":  # deleted in the UI: bring it back rather than fail
            log.warning("experiment %r was deleted; restoring it", name)
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = None
    if artifact_location is not None:
        location = Path(artifact_location).expanduser().resolve().as_uri()
    elif _is_local_sqlite(resolved):
        location = (local_artifact_root(resolved) / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:  # another process created it between our lookup and create
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        log.debug("experiment %s created concurrently: %s", name, exc)
        return found.experiment_id


def setup_mlflow(
    tracking_uri: str | None = None,  # noqa: A002 (same name as the module function on purpose)
    experiment: str = DEFAULT_EXPERIMENT,
    *,
    home: str | Path | None = None,
    artifact_location: str | Path | None = None,
) -> str:
    """Point the ``mlflow`` fluent API at the clipzoo store and select ``experiment``; return the URI.

    Used by the trainer before ``mlflow.start_run()`` / ``mlflow.log_metrics()``, and by the registry
    and benchmark harness. The registry URI is set to the same store.
    """
    import mlflow

    uri = _resolve_uri(tracking_uri, home=home)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment_id = ensure_experiment(experiment, uri=uri, home=home, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    log.info("MLflow store %s, experiment %r (id %s)", uri, experiment, experiment_id)
    return uri


_resolve_uri = tracking_uri  # setup_mlflow's argument shadows the function's name
