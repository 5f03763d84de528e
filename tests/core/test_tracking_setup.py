"""The local-store setup cache (tracking.LocalStoreSetup): once per database file, again when the file has gone."""

from __future__ import annotations

from pathlib import Path

from clipzoo.core.tracking import LocalStoreSetup


class CountingSetup(LocalStoreSetup):
    """The real cache and lock with the schema creation replaced by a counter (MLflow's migrations take seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []

    def _create(self, uri: str) -> None:
        Path(uri[len("sqlite:///"):]).write_bytes(b"")
        self.created.append(uri)


def test_a_store_is_set_up_once_and_again_after_it_was_deleted(tmp_path):
    setup = CountingSetup()
    uri = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    setup.prepare(uri)
    setup.prepare(uri)
    assert setup.created == [uri] and (tmp_path / "home" / "mlflow.db.lock").exists()
    (tmp_path / "home" / "mlflow.db").unlink()  # the store removed while the process runs
    assert setup.needed(tmp_path / "home" / "mlflow.db")
    setup.prepare(uri)
    assert setup.created == [uri, uri]

