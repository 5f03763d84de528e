"""Trainer: config, exact resume (also after SIGKILL), contrastive accumulation, exported package."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from clipzoo.core.ingest import run_ingest
from clipzoo.core.sources import SyntheticSource
from clipzoo.core.train import ConfigError, load_config, train

# A deliberately small open_clip model so each step takes milliseconds on a CPU.
MICRO_MODEL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train-shards")
    run_ingest(SyntheticSource(argparse.Namespace(count=160, seed=1, split="train", image_size=32)), [], out,
               max_count=40, progress=False)
    return out


def _base(shards: Path, out: Path, **sections) -> dict:
    cfg = {
        "run": {"output_dir": str(out), "mlflow": False, "log_every": 1, "progress": False, "seed": 7},
        "model": {"config": MICRO_MODEL},
        "data": {"train": str(shards), "batch_size": 8, "workers": 0, "shuffle_buffer": 32, "split": "samples"},
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "train": {"max_steps": 8, "checkpoint_every": 3, "keep_last": 2},
    }
    for name, values in sections.items():
        cfg[name].update(values)
    return cfg


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_config_yaml_overrides_and_errors(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": "x", "batch_size": 4}, "train": {"max_steps": 5}}))
    cfg = load_config(path, ["--train.max_steps=9", "--optim.lr=3e-4", "--train.max_time_s=null", "--run.mlflow=false"])
    assert (cfg.train.max_steps, cfg.optim.lr, cfg.data.batch_size, cfg.run.mlflow) == (9, 3e-4, 4, False)
    with pytest.raises(ConfigError, match="unknown key.*lrr"):
        load_config(path, ["--optim.lrr=1"])
    with pytest.raises(ConfigError, match="--section.key=value"):
        load_config(path, ["train.max_steps=3"])
    with pytest.raises(Exception):
        cfg.train.max_steps = 3  # frozen: derived values never go back into the config


def test_resume_continues_exactly(shards: Path, tmp_path: Path):
    straight = train(load_config(base=_base(shards, tmp_path / "a")))
    assert straight.steps == 8 and straight.resumed_from is None
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step-00000006", "step-00000008"]  # keep_last=2, whole folders only

    cfg = load_config(base=_base(shards, tmp_path / "b"))
    first = train(cfg, stop_after_steps=4)
    assert first.model_dir is None and first.steps == 4
    second = train(cfg)
    assert second.resumed_from == 4 and second.steps == 8
    a, b = _weights(straight.model_dir), _weights(second.model_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after resume")
    losses_a = [r["loss"] for r in straight.history]
    losses_b = [json.loads(line)["loss"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert losses_a == losses_b  # the resumed run saw exactly the same batches

    summary = json.loads((second.model_dir / "train_summary.json").read_text())
    assert summary["steps"] == 8 and summary["data"][0]["num_samples"] == 160
    assert summary["data"][0]["ingest"]["counters"]["license"] == {"cc0": 160}


def test_contrastive_accumulation_equals_the_large_batch(shards: Path, tmp_path: Path):
    big = train(load_config(base=_base(shards, tmp_path / "big", train={"max_steps": 3},
                                       data={"batch_size": 16})))
    acc = train(load_config(base=_base(shards, tmp_path / "acc", train={"max_steps": 3},
                                       data={"batch_size": 8}, optim={"accum_steps": 2})))
    assert [r["samples_seen"] for r in acc.history] == [r["samples_seen"] for r in big.history] == [16, 32, 48]
    for rb, ra in zip(big.history, acc.history):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)
    a, b = _weights(big.model_dir), _weights(acc.model_dir)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{k}: accumulation != large batch")


def test_sigkill_then_restart_resumes_from_last_checkpoint(shards: Path, tmp_path: Path):
    cfg = _base(shards, tmp_path / "run", train={"max_steps": 40, "checkpoint_every": 5})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "clipzoo.core.train", str(path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ckpt_root = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if (ckpt_root / "step-00000010").is_dir():
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
    assert "trained 40 steps" in done.stdout
    assert not list(ckpt_root.glob("*.partial"))

    # the uninterrupted reference runs the same way (a fresh process, same threads), so bitwise equality holds
    ref_cfg = tmp_path / "ref.yaml"
    ref_cfg.write_text(yaml.safe_dump(_base(shards, tmp_path / "ref", train={"max_steps": 40, "checkpoint_every": 5})))
    ref = subprocess.run([sys.executable, "-m", "clipzoo.core.train", str(ref_cfg)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    a, b = _weights(tmp_path / "ref" / "model"), _weights(tmp_path / "run" / "model")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after SIGKILL + resume")


def test_exported_package_loads_ready_to_use(shards: Path, tmp_path: Path):
    from clipzoo.core.models import load_pretrained

    res = train(load_config(base=_base(shards, tmp_path / "p", train={"max_steps": 2}, data={"augment": True})))
    model = load_pretrained(res.model_dir)
    assert model.preprocess["image"]["size"] == [32, 32]
    assert not model.preprocess["image"].get("train_crop_scale")  # training-time augmentation is not exported
    sd = _weights(res.model_dir)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k])


def test_bad_training_inputs_fail_with_clear_messages(tmp_path: Path, shards: Path):
    with pytest.raises(ConfigError, match="data.train is empty"):
        train(load_config(base=_base(shards, tmp_path / "x", data={"train": ""})))
    with pytest.raises(ConfigError, match="data.train=.*not found"):
        train(load_config(base=_base(shards, tmp_path / "y", data={"train": str(tmp_path / "none-{0..2}.tar")})))


def test_metrics_go_to_mlflow(shards: Path, tmp_path: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = _base(shards, tmp_path / "m", train={"max_steps": 3})
    cfg["run"].update(mlflow=True, tracking_uri=uri, experiment="t", name="metrics-test")
    res = train(load_config(base=cfg))
    run_id = json.loads((res.model_dir / "train_summary.json").read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=uri)
    for key in ("loss", "lr", "temperature", "samples_per_s"):
        history = client.get_metric_history(run_id, key)
        assert [m.step for m in history] == [1, 2, 3], key
    assert client.get_run(run_id).data.params["backend"] == "torch"


def test_loader_reads_pipe_urls(shards: Path):
    from clipzoo.core.data.loader import ResumableLoader, ShardStream, StreamConfig, resolve_shards

    urls = [f"pipe:cat {u}" for u in resolve_shards(shards)]
    stream = ShardStream(urls, lambda s: {"key": s["__key__"]}, StreamConfig(batch_size=10, split="samples"))
    keys = [k for b in ResumableLoader(stream).epoch_batches() for k in b["key"]]
    assert len(keys) == len(set(keys)) == 160
