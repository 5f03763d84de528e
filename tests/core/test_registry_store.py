"""The store resolution rules: explicit URI > MLFLOW_TRACKING_URI > sqlite under CLIPZOO_HOME."""

from __future__ import annotations

import subprocess
import sys

from clipzoo.core.registry import store


def test_default_is_sqlite_under_clipzoo_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CLIPZOO_HOME", str(tmp_path / "home"))
    assert store.tracking_uri() == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    assert store.tracking_uri(home=tmp_path / "other") == f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    monkeypatch.delenv("CLIPZOO_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert store.tracking_uri() == f"sqlite:///{tmp_path / 'user' / '.clipzoo' / 'mlflow.db'}"


def test_env_and_explicit_uri_win(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPZOO_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert store.tracking_uri() == "http://127.0.0.1:5999"
    assert store.tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"


def test_setup_mlflow_logs_to_local_store(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = store.setup_mlflow(experiment="train-test", home=tmp_path)
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5, step=3)
        mlflow.log_text("hello", "notes.txt")
    client = store.get_client(uri)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.5]
    exp = client.get_experiment_by_name("train-test")
    assert exp.artifact_location == (tmp_path / "mlartifacts" / "train-test").as_uri()
    assert (tmp_path / "mlartifacts" / "train-test" / run.info.run_id / "artifacts" / "notes.txt").read_text() == "hello"
    # a second setup finds the same experiment rather than failing, even after it was deleted in the UI
    client.delete_experiment(exp.experiment_id)
    store.setup_mlflow(uri, experiment="train-test")
    again = mlflow.get_experiment_by_name("train-test")
    assert again.experiment_id == exp.experiment_id and again.lifecycle_stage == "active"


def test_import_is_light():
    code = "import sys, clipzoo.core.registry.store, clipzoo.core.registry; print('mlflow' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
