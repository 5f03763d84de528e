"""The model registry against a real MLflow store: embedded sqlite, and a real `mlflow server` process.

A tiny open_clip-architecture model (seeded weights) is saved as a model package with a
train_summary.json, registered, loaded back by alias/version/folder, embedded through the logged
pyfunc, promoted under the champion rule, and registered by two processes at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "head_width": 16, "layers": 1},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
SUMMARY = {
    "domain": "biomed",
    "architecture": "tiny-test",
    "config": {"lr": 0.001, "epochs": 2, "batch_size": 8},
    "data": [
        {"name": "pmc-oa", "num_samples": 70, "licenses": {"cc-by": 50, "cc0": 20}, "shards": [{"sha256": "aa"}, {"sha256": "bb"}]},
        {"name": "roco", "num_samples": 30, "licenses": {"cc-by-nc": 30}, "fingerprint": "f00d"},
    ],
    "metrics": {"loss": 1.25},
}


def make_package(folder: Path, seed: int) -> Path:
    from clipzoo.core.models import create_model, save_pretrained

    torch.manual_seed(seed)
    package = save_pretrained(create_model(TINY), folder)
    (package / "train_summary.json").write_text(json.dumps(SUMMARY), encoding="utf-8")
    return package


def expected_fingerprint() -> str:
    pmc = hashlib.sha256(b"aabb").hexdigest()[:16]
    return hashlib.sha256("".join(sorted([pmc, "f00d"])).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("clipzoo_home")
    old = {k: os.environ.get(k) for k in ("CLIPZOO_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["CLIPZOO_HOME"] = str(path)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield path
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def registered(home, tmp_path_factory):
    """Version 1 of 'tiny-biomed' in the default store (sqlite under CLIPZOO_HOME), alias candidate."""
    from clipzoo.core.registry import register_model

    package = make_package(tmp_path_factory.mktemp("pkg") / "tiny", seed=0)
    version = register_model(package, "tiny-biomed", aliases=["candidate"])
    return package, version


def test_register_records_package_tags_and_card(registered, home):
    from clipzoo.core.registry import show_model, store

    package, version = registered
    assert version == 1
    assert store.tracking_uri() == f"sqlite:///{home / 'mlflow.db'}"
    info = show_model("models:/tiny-biomed@candidate")
    assert info["version"] == 1 and info["aliases"] == ["candidate"]
    weights = hashlib.sha256((package / "model.safetensors").read_bytes()).hexdigest()
    tags = info["tags"]
    assert {k: tags[k] for k in ("domain", "architecture", "data_fingerprint", "weights_sha256", "modalities",
                                 "licenses", "train_samples", "embed_dim")} == {
        "domain": "biomed", "architecture": "tiny-test", "data_fingerprint": expected_fingerprint(),
        "weights_sha256": weights, "modalities": "image,text", "licenses": "cc-by,cc-by-nc,cc0",
        "train_samples": "100", "embed_dim": "32"}
    assert json.loads(tags["preprocess/image"])["size"] == [32, 32]
    assert json.loads(tags["preprocess/text"])["tokenizer"] == {"context_length": 16, "name": "simple", "type": "open_clip"}
    card = info["card"]
    assert card.startswith("# tiny-biomed (version 1)")
    assert "| pmc-oa | 70 | cc-by (50), cc0 (20) |" in card
    assert "| roco | 30 | cc-by-nc (30) |" in card
    assert "Total: 100 samples." in card
    assert "Not a medical device" in card  # biomed intended use from registry/model_cards/settings.yaml
    assert "batch_size: 8" in card and '"context_length": 16' in card
    # the run holds the full card and the package's config/summary for browsing in the UI
    client = store.get_client()
    run_files = {f.path for f in client.list_artifacts(client.get_model_version("tiny-biomed", "1").run_id)}
    assert {"model_card.md", "package"} <= run_files


def test_load_by_alias_version_and_folder_gives_the_same_model(registered):
    import clipzoo.core
    from clipzoo.core.models import load_pretrained
    from clipzoo.core.registry import load_model

    package, _ = registered
    original = load_pretrained(package).eval()
    texts = ["a chest x-ray", "a fundus photograph of the retina"]
    tokens = original.preprocess["text"]["tokenizer"]
    assert tokens == {"type": "open_clip", "name": "simple", "context_length": 16}
    from clipzoo.core.models import get_tokenizer

    with torch.no_grad():
        want = original.encode("text", get_tokenizer(original.preprocess["text"])(texts)).numpy()
    by_alias = clipzoo.core.load("models:/tiny-biomed@candidate")
    by_version = load_model("models:/tiny-biomed/1")
    by_folder = load_model(package)
    for loaded in (by_alias, by_version, by_folder):
        np.testing.assert_allclose(loaded.encode_texts(texts), want, atol=1e-6)
    assert by_alias.version.version in ("1", 1) and by_alias.name == "tiny-biomed"
    assert by_alias.weights_sha256 == by_folder.weights_sha256
    from PIL import Image

    img = Image.new("RGB", (50, 40), (200, 30, 30))
    emb = by_alias.encode_images([img])
    assert emb.shape == (1, 32) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5
    np.testing.assert_allclose(emb, by_folder.encode_images([img]), atol=1e-6)
    # all a LoadedModel holds is declared, also once its per-modality transforms are built
    import dataclasses

    assert set(vars(by_alias)) == {f.name for f in dataclasses.fields(by_alias)}
    assert sorted(by_alias.modality_transforms) == ["image"]
    # the registry's part is the folder: the model layer loaded the one it resolved
    from clipzoo.core.registry import resolve_package

    resolved = resolve_package("models:/tiny-biomed/1")
    assert resolved.path == by_version.package_dir and resolved.version.version in ("1", 1)
    local = resolve_package(package)
    assert local.path == package.resolve() and local.version is None and local.weights_sha256 is None


def test_pyfunc_embeds_texts_and_images(registered, tmp_path):
    import base64
    import io

    import mlflow.pyfunc
    import pandas as pd
    from PIL import Image

    from clipzoo.core.registry import load_model, store

    mlflow.set_tracking_uri(store.tracking_uri())
    mlflow.set_registry_uri(store.tracking_uri())
    pyfunc = mlflow.pyfunc.load_model("models:/tiny-biomed/1")
    loaded = load_model("models:/tiny-biomed/1")
    texts = ["left lung opacity", "normal"]
    np.testing.assert_allclose(pyfunc.predict(pd.DataFrame({"text": texts})), loaded.encode_texts(texts), atol=1e-6)
    img = Image.new("RGB", (32, 32), (10, 200, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    frame = pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode()]})
    np.testing.assert_allclose(pyfunc.predict(frame), loaded.encode_images([img]), atol=1e-6)
    with pytest.raises(Exception, match="give one column named after a modality"):
        pyfunc.predict(pd.DataFrame({"caption": ["x"]}))


def test_unknown_references_say_what_exists(registered):
    from clipzoo.core.registry import RegistryError, load_model

    with pytest.raises(RegistryError, match=r"no registered model 'nope'.*registered: tiny-biomed"):
        load_model("models:/nope@champion")
    with pytest.raises(RegistryError, match=r"has no alias 'champion'; aliases: candidate"):
        load_model("models:/tiny-biomed@champion")
    with pytest.raises(RegistryError, match=r"has no version 9; versions: 1"):
        load_model("models:/tiny-biomed/9")
    with pytest.raises(RegistryError, match="neither a model folder nor a registry URI"):
        load_model("/no/such/folder")


def test_promotion_rule(registered, tmp_path):
    from clipzoo.core.registry import PromotionRefused, promote, register_model, show_model
    from clipzoo.core.registry.client import attach_benchmark

    task = "core/synthetic-shape"
    same = {"fingerprint": "f00d", "options": {"count": 200}, "n_items": 200,
            "interval": {"top1": [0.43, 0.57]}, "chance": {"top1": 0.25}}
    # v1 becomes champion (nobody holds it yet), with a score on a benchmark
    attach_benchmark("tiny-biomed", 1, {task: {"top1": 0.50, "top5": 1.0}}, {task: "top1"}, details={task: same})
    assert promote("tiny-biomed", 1, "champion")["previous"] is None
    v2 = register_model(make_package(tmp_path / "v2", seed=1), "tiny-biomed", aliases=["candidate"])
    assert v2 == 2
    # no benchmark in common: refused
    with pytest.raises(PromotionRefused, match=r"no benchmark in common \(candidate: none; current holder: core/synthetic-shape\)"):
        promote("tiny-biomed", 2, "champion")
    # a score without a fingerprint (attached by hand) is no evidence: refused, saying why
    attach_benchmark("tiny-biomed", 2, {task: {"top1": 0.90}}, {task: "top1"})
    with pytest.raises(PromotionRefused, match=r"the candidate's score has no dataset fingerprint"):
        promote("tiny-biomed", 2, "champion")
    # worse on the common benchmark: refused, numbers and the holder's interval in the message
    attach_benchmark("tiny-biomed", 2, {task: {"top1": 0.25}}, {task: "top1"}, details={task: dict(same, interval={"top1": [0.2, 0.3]})})
    with pytest.raises(PromotionRefused, match=r"core/synthetic-shape top1 0.2500 < 0.5000 \(outside its 95% interval "
                       r"\[0.4300, 0.5700\]: distinguishable\)"):
        promote("tiny-biomed", 2, "champion")
    assert show_model("models:/tiny-biomed@champion")["version"] == 1
    # forced: moves, and the override is recorded on the version
    decision = promote("tiny-biomed", 2, "champion", force=True, reason="manual review")
    assert decision["forced"] and decision["previous"] == 1
    info = show_model("models:/tiny-biomed@champion")
    assert info["version"] == 2
    assert info["tags"]["promotion_override/champion"].startswith("forced over version 1 by ")
    assert info["tags"]["promotion_override/champion"].endswith("distinguishable) (manual review)")
    # equal or better: allowed without force (v1 back, 0.50 >= 0.25, outside v2's interval), no override tag on v1
    assert promote("tiny-biomed", 1, "champion")["reason"] == (
        "core/synthetic-shape top1 0.5000 >= 0.2500 (outside its 95% interval [0.2000, 0.3000]: distinguishable)")
    assert "promotion_override/champion" not in show_model("models:/tiny-biomed/1")["tags"]
    # an indistinguishable gain still promotes, and says so
    attach_benchmark("tiny-biomed", 2, {task: {"top1": 0.52}}, {task: "top1"}, details={task: same})
    assert promote("tiny-biomed", 2, "champion")["reason"] == (
        "core/synthetic-shape top1 0.5200 >= 0.5000 (within its 95% interval [0.4300, 0.5700]: not distinguishable)")
    assert "top5" not in show_model("models:/tiny-biomed/2")["benchmarks"][task]  # re-attaching dropped nothing stale
    # candidate is not guarded: moves freely
    assert promote("tiny-biomed", 1, "candidate")["forced"] is False


_REGISTER = """
import sys, time
from pathlib import Path
import mlflow, torch
from clipzoo.core.registry import register_model
ready = Path(sys.argv[3])
(ready / sys.argv[4]).touch()
while len(list(ready.iterdir())) < 2:  # both interpreters loaded: start at the same moment
    time.sleep(0.01)
print(register_model(sys.argv[1], "race", tracking_uri=sys.argv[2]))
"""


def test_two_processes_register_at_once(home, tmp_path):
    from clipzoo.core.registry import list_models, load_model

    uri = f"sqlite:///{tmp_path / 'race.db'}"
    packages = [make_package(tmp_path / f"p{i}", seed=10 + i) for i in range(2)]
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _REGISTER, str(p), uri, str(ready), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i, p in enumerate(packages)]
    outs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
    versions = sorted(int(out.strip().splitlines()[-1]) for out, _ in outs)
    assert versions == [1, 2]
    listed = list_models(uri)
    assert [m["name"] for m in listed] == ["race"] and [v["version"] for v in listed[0]["versions"]] == [2, 1]
    # each version holds its own weights, intact
    hashes = {hashlib.sha256((p / "model.safetensors").read_bytes()).hexdigest() for p in packages}
    loaded = {load_model(f"models:/race/{v}", tracking_uri=uri).weights_sha256 for v in versions}
    assert loaded == hashes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path):
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, 15)  # the server's own process group (uvicorn workers included)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    log.close()


def test_against_a_real_mlflow_server(mlflow_server, home, tmp_path, monkeypatch):
    from clipzoo.core.registry import list_models, load_model, promote, register_model, show_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # honoured without passing it around
    package = make_package(tmp_path / "pkg", seed=3)
    assert register_model(package, "served", aliases=["candidate"]) == 1
    assert register_model(package, "served") == 2
    assert [v["version"] for v in list_models()[0]["versions"]] == [2, 1]
    assert show_model("models:/served@candidate")["tags"]["data_fingerprint"] == expected_fingerprint()
    loaded = load_model("models:/served@candidate")
    assert loaded.weights_sha256 == hashlib.sha256((package / "model.safetensors").read_bytes()).hexdigest()
    assert loaded.encode_texts(["x"]).shape == (1, 32)
    assert promote("served", 2, "champion")["previous"] is None
    # the artifacts went through the server (proxied), not to a local path of this process
    assert any((tmp_path / "server-artifacts").rglob("model.safetensors"))


def test_card_from_a_trainer_summary(tmp_path):
    """The summary clipzoo.core.train writes: training_config, final_metrics, data from shard manifests."""
    from clipzoo.core.data.synthetic import synthetic_samples
    from clipzoo.core.data.writer import ShardWriter
    from clipzoo.core.registry.card import read_package, render_model_card

    source = {"domain": "core", "name": "synthetic", "options": {}}
    with ShardWriter(tmp_path / "shards", max_count=4, source=source) as writer:
        for sample in synthetic_samples(6, 0, "train", 32):
            writer.write(sample)
    manifest = writer.manifest
    package = make_package(tmp_path / "pkg", seed=0)
    summary = {
        "name": "synthetic", "architecture": "custom", "steps": 10, "mlflow_run_id": "abc123",
        "final_metrics": {"step": 10, "loss": 2.5, "lr": 0.001},
        "training_config": {"optim": {"lr": 0.002}, "train": {"max_steps": 10}},
        "data": [{"name": "shards", "path": str(tmp_path / "shards"), "num_samples": manifest.num_samples,
                  "shards": [{"name": s.name, "samples": s.samples, "sha256": s.sha256} for s in manifest.shards],
                  "source": manifest.source, "ingest": {"counters": {"license": {"cc0": 6}}, "samples_written": 6}}],
    }
    (package / "train_summary.json").write_text(json.dumps(summary))
    info = read_package(package)
    assert info.domain == "core" and info.architecture == "open_clip"  # "custom" says nothing; the config does
    assert info.data_fingerprint == hashlib.sha256(
        hashlib.sha256("".join(s.sha256 for s in manifest.shards).encode()).hexdigest()[:16].encode()).hexdigest()[:16]
    assert len(manifest.shards) == 2 and info.licenses == {"cc0": 6}
    card = render_model_card(
        info, name="synthetic-tiny", version=3,
        benchmarks={"core/synthetic-shape": {"top1": 0.75}, "biomed/zeroshot": {"top1": 0.5}},
        bench_details={"core/synthetic-shape": {"n_items": 200, "interval": {"top1": [0.69, 0.81]}, "chance": {"top1": 0.25}},
                       "biomed/zeroshot": {"n_items": 2, "interval": {"top1": [0.0, 1.0]}, "chance": {"top1": 0.5}}})
    assert "| shards | 6 | cc0 (6) |" in card
    assert "max_steps: 10" in card and "`loss` = 2.5" in card and "`step`" not in card
    assert "| core/synthetic-shape | 200 | top1 | 0.7500 | [0.6900, 0.8100] | 0.2500 |" in card
    assert "| biomed/zeroshot | 2 | top1 | too few items to measure | [0.0000, 1.0000] | 0.5000 |" in card
    assert read_package(package, domain="astro").domain == "astro"
    # a summary that names licenses without counts
    summary["data"].append({"name": "extra", "num_samples": 4, "licenses": ["cc0", "cc-by"]})
    (package / "train_summary.json").write_text(json.dumps(summary))
    info = read_package(package)
    assert info.licenses == {"cc-by": None, "cc0": None}
    card = render_model_card(info, name="synthetic-tiny")
    assert "| extra | 4 | cc-by, cc0 |" in card and "Total: 10 samples." in card


_UI = """
import argparse, sys
from clipzoo.core.registry import cli
parser = argparse.ArgumentParser(prog="clipzoo")
cli.add_parser(parser.add_subparsers(dest="command"))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def test_ui_opens_the_same_store(registered, home, tmp_path):
    """`clipzoo ui` serves the default store: the registered model is visible through the UI's API."""
    port = _free_port()
    log = open(tmp_path / "ui.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", _UI, "ui", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "CLIPZOO_HOME": str(home)})
    try:
        deadline = time.time() + 120
        while True:
            try:
                url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/registered-models/search"
                body = json.loads(urllib.request.urlopen(url, timeout=2).read())
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"clipzoo ui did not serve: {(tmp_path / 'ui.log').read_text()[-2000:]}")
                time.sleep(0.5)
        assert "tiny-biomed" in [m["name"] for m in body["registered_models"]]
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow  # two fresh MLflow stores, one of them in a second process
def test_a_store_rebuilt_at_the_same_uri_never_serves_the_old_cached_model(home, tmp_path):
    """The download cache is keyed by store URI, name and version; a store deleted and rebuilt at the same URI has
    another model under the same version number, which must be downloaded, not taken from the cache. (The first
    store is used by another process, as a rebuilt store would have been: MLflow keeps a store's engine per URI.)"""
    import shutil

    from clipzoo.core.registry import load_model, register_model

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    first, second = make_package(tmp_path / "a", seed=11), make_package(tmp_path / "b", seed=12)
    script = ("import sys; from clipzoo.core.registry import load_model, register_model; "
              "register_model(sys.argv[1], 'rebuilt', tracking_uri=sys.argv[2], experiment='rebuilt'); "
              "print(load_model('models:/rebuilt/1', tracking_uri=sys.argv[2]).weights_sha256)")
    done = subprocess.run([sys.executable, "-c", script, str(first), uri], capture_output=True, text=True,
                          env={**os.environ, "CLIPZOO_HOME": str(home)}, timeout=300)
    assert done.stdout.split()[-1] == hashlib.sha256((first / "model.safetensors").read_bytes()).hexdigest()
    shutil.rmtree(store)
    store.mkdir()
    assert register_model(second, "rebuilt", tracking_uri=uri, experiment="rebuilt") == 1
    loaded = load_model("models:/rebuilt/1", tracking_uri=uri)
    want = hashlib.sha256((second / "model.safetensors").read_bytes()).hexdigest()
    assert loaded.weights_sha256 == want
    assert hashlib.sha256((loaded.package_dir / "model.safetensors").read_bytes()).hexdigest() == want
