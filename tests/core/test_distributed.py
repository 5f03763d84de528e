"""Two processes on this CPU (gloo): torch DDP and DeepSpeed ZeRO-2/3 against the one-process run.

The 2-process runs use half the per-rank batch and the sample-level split, so each step's global batch
is the same set of samples as the 1-process batch, and the gathered CLIP loss is the same quantity.
Tolerance: the logged loss agrees to 1e-4 relative at every step (gloo reductions sum in another
order than one process, and ZeRO keeps flat fp32 partitions, so bitwise equality is not expected).
DeepSpeed's first start compiles its shared-memory comm op (~40 s, cached under ~/.cache/torch_extensions).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clipzoo.core.ingest import run_ingest
from clipzoo.core.sources import SyntheticSource

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

STEPS = 5
MODEL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    shards = root / "shards"
    run_ingest(SyntheticSource(argparse.Namespace(count=128, seed=2, split="train", image_size=32)), [], shards,
               max_count=32, progress=False)
    cfg = {
        "run": {"output_dir": str(root / "unused"), "mlflow": False, "log_every": 1, "progress": False, "seed": 5},
        "model": {"config": MODEL},
        "data": {"train": str(shards), "batch_size": 16, "workers": 0, "shuffle_buffer": 32, "split": "samples"},
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "train": {"max_steps": STEPS, "checkpoint_every": 100},
    }
    path = root / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return root, path


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _run(args: list[str], timeout: int = 420) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's ninja
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def _torchrun(cfg: Path, out: Path, *overrides: str) -> list[float]:
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
          "-m", "clipzoo.core.train", str(cfg), f"--run.output_dir={out}", "--data.batch_size=8", *overrides])
    return _losses(out)


@pytest.fixture(scope="module")
def reference(setup) -> list[float]:
    root, cfg = setup
    out = root / "one"
    _run([sys.executable, "-m", "clipzoo.core.train", str(cfg), f"--run.output_dir={out}"])
    losses = _losses(out)
    assert len(losses) == STEPS and losses[-1] < losses[0]
    return losses


def test_ddp_two_processes_match_one(setup, reference):
    root, cfg = setup
    losses = _torchrun(cfg, root / "ddp")
    assert losses == pytest.approx(reference, rel=1e-4)


def test_deepspeed_zero2_two_processes_match_one(setup, reference):
    root, cfg = setup
    losses = _torchrun(cfg, root / "z2", "--train.backend=deepspeed", "--train.zero_stage=2")
    assert losses == pytest.approx(reference, rel=1e-4)


def test_deepspeed_zero3_with_contrastive_accumulation_matches_one(setup, reference):
    """ZeRO-3, 2 ranks x 2 micro-batches of 4 (GradCache): still the 16-sample global batch."""
    root, cfg = setup
    out = root / "z3"
    losses = _torchrun(cfg, out, "--train.backend=deepspeed", "--train.zero_stage=3",
                       "--data.batch_size=4", "--optim.accum_steps=2")
    assert losses == pytest.approx(reference, rel=1e-4)
    # the exported package is the full (gathered) model and loads on its own
    from clipzoo.core.models import load_pretrained

    model = load_pretrained(out / "model")
    assert sum(p.numel() for p in model.parameters()) > 100_000


def test_deepspeed_launcher_runs_the_same_training(setup, reference):
    """The `deepspeed` launcher (which passes --local_rank) instead of torchrun."""
    import socket

    root, cfg = setup
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = root / "launcher"
    _run([str(Path(sys.executable).parent / "deepspeed"), "--num_accelerators", "2", "--master_port", str(port),
          "--module", "clipzoo.core.train", str(cfg), f"--run.output_dir={out}", "--data.batch_size=8",
          "--train.backend=deepspeed", "--train.zero_stage=2"])
    assert _losses(out) == pytest.approx(reference, rel=1e-4)


def test_deepspeed_bf16_with_cpu_optimizer_offload(setup, reference):
    """One process, ZeRO-2, bf16 weights and the optimizer state offloaded to the CPU: trains, exports fp32."""
    import math

    from clipzoo.core.models import load_pretrained

    root, cfg = setup
    out = root / "bf16"
    _run([sys.executable, "-m", "clipzoo.core.train", str(cfg), f"--run.output_dir={out}",
          "--train.backend=deepspeed", "--train.zero_stage=2", "--train.precision=bf16",
          "--train.offload_optimizer=true"])
    losses = _losses(out)
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    assert losses == pytest.approx(reference, rel=0.05)  # bf16 rounding, same trajectory
    model = load_pretrained(out / "model")
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())
