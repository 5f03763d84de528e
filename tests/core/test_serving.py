"""Serving a registered version: the pyfunc's signature (input columns + the modality param), a real
`mlflow models serve --env-manager local` process answering POST /invocations, and `clipzoo ui` stopping
its whole process group on SIGTERM."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_registry import make_package  # noqa: E402

NAME = "served-tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A temporary sqlite store (MLFLOW_TRACKING_URI) holding version 1 of NAME."""
    from clipzoo.core.registry import register_model

    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = {k: os.environ.get(k) for k in ("CLIPZOO_HOME", "MLFLOW_TRACKING_URI")}
    os.environ.update(CLIPZOO_HOME=str(root / "home"), MLFLOW_TRACKING_URI=uri)
    register_model(make_package(root / "pkg", seed=5), NAME)
    yield root, uri
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _png(colour) -> tuple[str, object]:
    from PIL import Image

    img = Image.new("RGB", (32, 32), colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode(), img


@pytest.mark.slow  # the store's first opening (schema migrations) takes ~20 s here
def test_pyfunc_signature_lists_the_modalities_and_the_modality_param(store):
    import mlflow.pyfunc
    import pandas as pd

    import clipzoo.core

    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    sig = pyfunc.metadata.signature
    assert {c.name: c.required for c in sig.inputs.inputs} == {"image": False, "text": False}
    assert [(p.name, p.default) for p in sig.params.params] == [("modality", "")]
    loaded = clipzoo.core.load(f"models:/{NAME}/1")
    b64, img = _png((200, 30, 30))
    frame = pd.DataFrame({"image": [b64, b64], "text": ["a red square", "a blue circle"]})
    both = pyfunc.predict(frame)
    assert list(both.columns) == ["image_embedding", "text_embedding"]
    np.testing.assert_allclose(np.stack(both["image_embedding"]), loaded.encode_images([img, img]), atol=1e-5)
    np.testing.assert_allclose(np.stack(both["text_embedding"]), loaded.encode_texts(list(frame["text"])), atol=1e-5)
    only_text = pyfunc.predict(frame, params={"modality": "text"})  # the param is honoured, not warned away
    np.testing.assert_allclose(only_text, loaded.encode_texts(list(frame["text"])), atol=1e-5)
    with pytest.raises(Exception, match="modality='audio'"):
        pyfunc.predict(frame, params={"modality": "audio"})


def _post(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds  # a bounded wait for a server to come up, not a timing assertion
    while True:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not come up: {log.read_text()[-3000:]}")
        time.sleep(0.5)


def _stop_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_mlflow_models_serve_returns_the_same_embeddings(store, tmp_path):
    """Through `clipzoo serve`, which runs `mlflow models serve --env-manager local -m models:/NAME/1` with the
    venv's bin on PATH: started here with a PATH that lacks it, as from a shell without the venv activated."""
    import clipzoo.core

    root, uri = store
    port = _free_port()
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": path}
    cmd = [sys.executable, "-m", "clipzoo.core.cli", "serve", f"models:/{NAME}/1", "--port", str(port)]
    log = tmp_path / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    server: list[int] = []
    try:
        _wait_http(f"http://127.0.0.1:{port}/ping", proc, log, 180)
        b64, img = _png((10, 200, 30))
        texts = ["a green square", "a red circle"]
        split = {"columns": ["image", "text"], "data": [[b64, texts[0]], [b64, texts[1]]]}
        both = _post(f"http://127.0.0.1:{port}/invocations", {"dataframe_split": split})["predictions"]
        only_text = _post(f"http://127.0.0.1:{port}/invocations",
                          {"dataframe_split": split, "params": {"modality": "text"}})["predictions"]
        server = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)  # to clipzoo alone: it stops the server's whole process group
        proc.wait(timeout=60)
        assert not [p for p in server if _running(p)], "mlflow models serve left running after SIGTERM"
    finally:
        _stop_group(proc)
        _kill_groups(server)
    loaded = clipzoo.core.load(f"models:/{NAME}/1")
    np.testing.assert_allclose([r["image_embedding"] for r in both], loaded.encode_images([img, img]), atol=1e-5)
    np.testing.assert_allclose([r["text_embedding"] for r in both], loaded.encode_texts(texts), atol=1e-5)
    np.testing.assert_allclose(only_text, loaded.encode_texts(texts), atol=1e-5)
    assert "params schema" not in log.read_text()  # MLflow warns, and drops the params, when there is none


def _kill_groups(pids: list[int]) -> None:
    """Clean-up of whatever a failed test left behind (each server runs in its own process group)."""
    for pid in pids:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _running(pid: int) -> bool:
    import psutil

    try:
        psutil.Process(pid).wait(timeout=30)  # bounded: a process being stopped gets time to exit
        return False
    except psutil.NoSuchProcess:
        return False
    except psutil.TimeoutExpired:
        return True


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_clipzoo_ui_stopped_with_sigterm_stops_mlflow_ui_and_its_workers(store, tmp_path):
    import psutil

    port = _free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as fh:
        # its own session only so that the test can clean up whatever is left; SIGTERM goes to clipzoo alone
        proc = subprocess.Popen([sys.executable, "-m", "clipzoo.core.cli", "ui", "--port", str(port)], stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    children: list[int] = []
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc, log, 180)
        children = _descendants(proc.pid)
        assert children, "mlflow ui runs as a child of clipzoo ui"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        _, alive = psutil.wait_procs([psutil.Process(p) for p in children if psutil.pid_exists(p)], timeout=30)
        assert not alive, f"left running after SIGTERM: {[p.pid for p in alive]}"
    finally:
        _kill_groups([proc.pid, *children])
        proc.wait(timeout=30)
