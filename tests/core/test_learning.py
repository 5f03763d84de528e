"""Proof that it learns: a tiny CLIP trained for a fixed number of steps (about 2 minutes on 2 CPU cores)
must reach text->image R@1 >= 0.8 on 100 held-out synthetic pairs with distinct descriptions (chance: 0.01).

Bounded by steps only, so a loaded machine makes it slower, never different; how long it takes and how
many steps the target needs are measured by ``perf/learning_proof_time.py``."""

from __future__ import annotations

import argparse

import pytest

from clipzoo.core.bench import run_benchmark
from clipzoo.core.ingest import run_ingest
from clipzoo.core.models import create_model, save_pretrained
from clipzoo.core.sources import SyntheticSource
from clipzoo.core.train import load_config, train

pytestmark = pytest.mark.slow

RETRIEVAL = {"core/synthetic-retrieval": {"count": 100, "image_size": 32}}


def _t2i_r1(model_dir, cache) -> float:
    res = run_benchmark(model_dir, ["core/synthetic-retrieval"], task_options=RETRIEVAL, log=False,
                        print_table=False, cache_dir=cache)
    return res["tasks"]["core/synthetic-retrieval"]["metrics"]["text2image_R1"]


TARGET_R1 = 0.8
STEPS = 560


def proof_config(shards, out, steps: int = STEPS, checkpoint_every: int = 10_000) -> dict:
    """The learning proof's run (also timed by perf/learning_proof_time.py)."""
    return {
        "run": {"output_dir": str(out), "mlflow": False, "log_every": 50, "progress": False},
        "model": {"config": "clipzoo-tiny-32"},
        "data": {"train": str(shards), "batch_size": 64, "workers": 1, "shuffle_buffer": 1000},
        "optim": {"lr": 3e-3, "warmup_steps": 30, "weight_decay": 0.05},
        "train": {"max_steps": steps, "checkpoint_every": checkpoint_every, "keep_last": 10**6, "threads": 1},
    }


def proof_shards(folder):
    run_ingest(SyntheticSource(argparse.Namespace(count=4000, seed=0, split="train", image_size=32)), [], folder,
               max_count=1000, progress=False)
    return folder


def test_tiny_clip_learns_synthetic_pairs_in_fixed_steps(tmp_path):
    shards = proof_shards(tmp_path / "shards")
    result = train(load_config(base=proof_config(shards, tmp_path / "run")))
    assert result.steps == STEPS
    untrained = save_pretrained(create_model("clipzoo-tiny-32"), tmp_path / "untrained")
    before = _t2i_r1(untrained, tmp_path / "cache")
    after = _t2i_r1(result.model_dir, tmp_path / "cache")
    print(f"steps {result.steps}, {result.samples_per_s:.0f} samples/s, t2i R@1 {before:.2f} -> {after:.2f}")
    assert before < 0.1
    assert after >= TARGET_R1, f"t2i R@1 {after:.2f} after {result.steps} steps ({result.samples_per_s:.0f} samples/s)"
