"""Shard sets in object storage and on HTTP mirrors, read through their manifest, against real loopback servers.

An S3-compatible ``moto_server`` and a threaded ``http.server`` (byte ranges, injected faults) run on 127.0.0.1
(fixtures in conftest.py). Before this, s3:// and http(s):// URLs were passed to webdataset's gopen untested:
no manifest, no size check, no retry, and a failure was a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from clipzoo.core.cli import main
from clipzoo.core.data.loader import ResumableLoader, ShardStream, StreamConfig, resolve_shards
from clipzoo.core.data.shardset import BadShardError, ShardSetError, Storage
from clipzoo.core.data.synthetic import synthetic_samples
from clipzoo.core.data.writer import Manifest, ShardWriter

pytestmark = pytest.mark.usefixtures("no_aws_settings")


@pytest.fixture(scope="module")
def local_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("remote-src")
    with ShardWriter(out, max_count=10) as writer:
        for sample in synthetic_samples(40, 5, image_size=32):
            writer.write(sample)
    return out


def _keys(shards, storage: Storage | None = None, workers: int = 0, policy: str = "stop") -> list[str]:
    cfg = StreamConfig(batch_size=5, seed=3, shuffle_buffer=8, split="shards" if workers else "samples",
                       on_bad_shard=policy, storage=storage or Storage())
    loader = ResumableLoader(ShardStream(shards, lambda s: {"key": s["__key__"]}, cfg), num_workers=workers)
    return [k for b in loader.epoch_batches() for k in b["key"]]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- S3 (moto) ----------------------------------------------------------------------------------------------
def test_s3_set_streams_through_its_manifest(moto_s3, local_set: Path, monkeypatch, capsys):
    url = moto_s3.upload(local_set, "clipzoo-test", "set-a")
    storage = Storage(options=moto_s3.options)
    refs = resolve_shards(url, storage=storage)
    manifest = Manifest.load(local_set)
    assert refs == [f"{url}{s.name}" for s in manifest.shards] and [r.bytes for r in refs] == [
        s.bytes for s in manifest.shards]
    local = _keys(resolve_shards(local_set))
    assert _keys(refs, storage) == local  # the same samples in the same order as from local disk
    assert sorted(_keys(refs, storage, workers=2)) == sorted(_keys(resolve_shards(local_set), workers=2))

    # the CLI on the bucket, with the endpoint and credentials from the usual environment variables
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert main(["shards", "inspect", url, "-n", "1"]) == 0
    assert "40 samples in 4 shards" in capsys.readouterr().out
    assert main(["shards", "verify", url]) == 0
    assert "all 4 shards match their sha256" in capsys.readouterr().out


def test_s3_missing_object_wrong_endpoint_and_bucket_are_one_line_each(moto_s3, local_set: Path, capsys):
    url = moto_s3.upload(local_set, "clipzoo-test", "set-b")
    storage = Storage(options=moto_s3.options)
    gone = Manifest.load(local_set).shards[2].name
    moto_s3.client().delete_object(Bucket="clipzoo-test", Key=f"set-b/{gone}")
    with pytest.raises(BadShardError, match=rf"^{url}{gone}: not found \(404/no such object\); check the bucket"):
        _keys(resolve_shards(url, storage=storage), storage)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")  # undone by no_aws_settings
    assert main(["shards", "inspect", url, "--endpoint-url", moto_s3.endpoint]) == 1
    assert f"{url}{gone}: missing (listed in the manifest)" in capsys.readouterr().err

    port = _closed_port()
    wrong = Storage(options={**moto_s3.options, "endpoint_url": f"http://127.0.0.1:{port}",
                             "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}})
    with pytest.raises(ShardSetError, match=rf"cannot reach http://127.0.0.1:{port} .*; check the endpoint"):
        resolve_shards(url, storage=wrong)
    with pytest.raises(ShardSetError, match=r"s3://no-such-bucket/set/: not found \(no such bucket"):
        resolve_shards("s3://no-such-bucket/set/", storage=storage)


# -- HTTP mirror (http.server) ---------------------------------------------------------------------------------
def _mirror(http_server, local_set: Path, name: str = "set") -> str:
    shutil.copytree(local_set, http_server.root / name)
    return f"{http_server.url}/{name}/"


def test_http_mirror_streams_and_the_cache_makes_no_new_requests(http_server, local_set: Path, tmp_path: Path,
                                                                  capsys):
    url = _mirror(http_server, local_set)
    local = _keys(resolve_shards(local_set))
    assert _keys(resolve_shards(url)) == local
    assert main(["shards", "inspect", url, "-n", "1"]) == 0  # the server's folder listing: no extra files
    assert main(["shards", "verify", url]) == 0

    storage = Storage(cache_dir=str(tmp_path / "cache"))
    shards = resolve_shards(url, storage=storage)
    assert _keys(shards, storage) == local  # first epoch: fetched and kept
    names = [s.name for s in Manifest.load(local_set).shards]
    before = dict(http_server.faults.requests)
    assert all(before[n] >= 1 for n in names)
    assert _keys(shards, storage) == local  # second epoch: from the cache
    assert http_server.faults.requests == before, "the second epoch fetched again"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        f"{s.sha256}.tar" for s in Manifest.load(local_set).shards)


def test_cache_stays_within_its_bound(http_server, local_set: Path, tmp_path: Path):
    url = _mirror(http_server, local_set)
    largest = max(s.bytes for s in Manifest.load(local_set).shards)
    storage = Storage(cache_dir=str(tmp_path / "cache"), cache_max_bytes=2 * largest)
    _keys(resolve_shards(url, storage=storage), storage)
    cached = list((tmp_path / "cache").glob("*.tar"))
    assert len(cached) == 2 and sum(p.stat().st_size for p in cached) <= 2 * largest


def test_dropped_connection_is_retried_at_its_offset_then_succeeds(http_server, local_set: Path):
    url = _mirror(http_server, local_set)
    victim = Manifest.load(local_set).shards[1].name
    http_server.faults.drop[victim] = 2
    storage = Storage(retries=3, backoff_s=0.01)
    assert _keys(resolve_shards(url), storage) == _keys(resolve_shards(local_set))
    assert http_server.faults.drop[victim] == 0  # both faults happened, and the read went on


def test_retries_exhausted_is_one_line_then_stop_or_skip(http_server, local_set: Path):
    url = _mirror(http_server, local_set)
    manifest = Manifest.load(local_set)
    victim = manifest.shards[1].name
    http_server.faults.drop[victim] = 100
    storage = Storage(retries=2, backoff_s=0.01)
    with pytest.raises(BadShardError) as exc:
        _keys(resolve_shards(url), storage)
    assert str(exc.value).startswith(f"{url}{victim}: the connection broke 3 times") and "\n" not in str(exc.value)
    kept = _keys(resolve_shards(url), storage, policy="skip")
    assert len(kept) == len(set(kept)) == 30


def test_http_403_and_404_are_one_line_each(http_server, local_set: Path):
    url = _mirror(http_server, local_set)
    names = [s.name for s in Manifest.load(local_set).shards]
    http_server.faults.status[names[0]] = 403
    with pytest.raises(BadShardError, match=rf"^{url}{names[0]}: access denied \(403\); check that the server allows"):
        _keys(resolve_shards(url))
    del http_server.faults.status[names[0]]
    (http_server.root / "set" / names[3]).unlink()
    with pytest.raises(BadShardError, match=rf"^{url}{names[3]}: not found \(404"):
        _keys(resolve_shards(url))
    with pytest.raises(ShardSetError, match=r"/nothing-here/: no manifest.json"):
        resolve_shards(f"{http_server.url}/nothing-here/")
    http_server.faults.status["manifest.json"] = 403
    with pytest.raises(ShardSetError, match=r"/set/manifest.json: access denied \(403\)"):
        resolve_shards(url)


def test_brace_patterns_and_pipe_stay_without_a_manifest(http_server, local_set: Path):
    url = _mirror(http_server, local_set)
    pattern = f"{url}shard-{{000000..000003}}.tar"
    assert _keys(resolve_shards(pattern)) == _keys(resolve_shards(local_set))
    piped = [f"pipe:cat {p}" for p in resolve_shards(local_set)]
    assert _keys(piped) == _keys(resolve_shards(local_set))


# -- exact resume, streaming from S3 -------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkill_while_streaming_from_s3_then_resume_gives_the_uninterrupted_weights(moto_s3, tmp_path: Path):
    """The SIGKILL test of test_train.py, with data.train on the moto bucket; the reference reads local disk."""
    from test_train import _base, _weights  # the trainer test's config and weight reader

    src = tmp_path / "src"
    with ShardWriter(src, max_count=40) as writer:
        for sample in synthetic_samples(160, 1, image_size=32):
            writer.write(sample)
    url = moto_s3.upload(src, "clipzoo-train", "synthetic")
    remote = {"train": url, "storage_options": moto_s3.options}
    cfg = _base(src, tmp_path / "run", data=remote, train={"max_steps": 40, "checkpoint_every": 5})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "clipzoo.core.train", str(path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ckpt_root = tmp_path / "run" / "checkpoints"
    try:
        for _ in range(4800):  # bounded: up to ~240 s
            if proc.poll() is not None or (ckpt_root / "step-00000010").is_dir():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed_at = max(int(p.name.split("-")[1]) for p in ckpt_root.glob("step-????????"))
    assert 10 <= killed_at < 40
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {ckpt_root / f'step-{killed_at:08d}'}" in done.stderr

    ref_cfg = tmp_path / "ref.yaml"
    ref_cfg.write_text(yaml.safe_dump(_base(src, tmp_path / "ref", train={"max_steps": 40, "checkpoint_every": 5})))
    ref = subprocess.run([sys.executable, "-m", "clipzoo.core.train", str(ref_cfg)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    a, b = _weights(tmp_path / "ref" / "model"), _weights(tmp_path / "run" / "model")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after SIGKILL + resume from S3")


def test_training_from_a_folder_url_reads_the_preprocessing_its_manifest_records(http_server, local_set: Path,
                                                                                 tmp_path: Path):
    """The trainer merges the data's ``preprocess`` note into the model (or refuses a contradiction) for a folder
    URL as for a local folder; it used to skip every URL, so a model trained from a bucket lost the note."""
    import json

    from clipzoo.core.train import load_config, train
    from clipzoo.core.train.config import ConfigError

    url = _mirror(http_server, local_set)
    manifest = http_server.root / "set" / "manifest.json"
    data = json.loads(manifest.read_text())
    data.setdefault("ingest", {}).setdefault("notes", {})["preprocess"] = {"image": {"size": [32, 32]}}
    manifest.write_text(json.dumps(data))
    cfg = load_config(base={
        "model": {"config": "clipzoo-tiny"},
        "data": {"train": url, "batch_size": 8, "workers": 0, "cache_dir": str(tmp_path / "cache")},
        "train": {"max_steps": 1, "checkpoint_every": 100},
        "run": {"output_dir": str(tmp_path / "run"), "mlflow": False, "progress": False},
    })
    with pytest.raises(ConfigError, match=r"preprocess image\.size=\[32, 32\] contradicts \[64, 64\] of the model"):
        train(cfg)
    assert not (tmp_path / "run").exists()
