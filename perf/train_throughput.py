"""Training throughput of the tiny CLIP on this machine, against a named baseline measured in the same run.

Baseline: the torch backend, fp32, one process, batch 64, contrastive accumulation off. Variants:
DeepSpeed ZeRO-2 in one process (same math, engine overhead), GradCache accumulation 2 x 32 (same
effective batch, one extra no-grad forward), bf16 autocast on the CPU, and one torch thread.
Each variant trains the same synthetic shards for a fixed number of steps; samples/s counts
the optimizer steps' samples over the loop's wall time (data loading included).

    .venv/bin/python perf/train_throughput.py [--steps 80] [--model clipzoo-tiny-32]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "torch fp32 (baseline)": [],
    "deepspeed zero-2": ["--train.backend=deepspeed", "--train.zero_stage=2"],
    "gradcache 2x32": ["--data.batch_size=32", "--optim.accum_steps=2"],
    "torch bf16 autocast": ["--train.precision=bf16"],
    "torch 1 thread": ["--train.threads=1"],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--model", default="clipzoo-tiny-32")
    p.add_argument("--image-size", type=int, default=32)
    args = p.parse_args()

    import yaml

    from clipzoo.core.ingest import run_ingest
    from clipzoo.core.sources import SyntheticSource

    work = Path(tempfile.mkdtemp(prefix="clipzoo-throughput-"))
    shards = work / "shards"
    run_ingest(SyntheticSource(argparse.Namespace(count=3000, seed=0, split="train", image_size=args.image_size)), [],
               shards, max_count=500, progress=False)
    cfg = {"run": {"mlflow": False, "progress": False, "log_every": 10**6},
           "model": {"config": args.model},
           "data": {"train": str(shards), "batch_size": 64, "workers": 1},
           "train": {"max_steps": args.steps, "checkpoint_every": 10**6}}
    path = work / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    rows = []
    for name, overrides in VARIANTS.items():
        out = work / name.split()[0]
        t0 = time.time()
        done = subprocess.run([sys.executable, "-m", "clipzoo.core.train", str(path), f"--run.output_dir={out}-{len(rows)}",
                               *overrides], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-1500:]}", file=sys.stderr)
            continue
        sps = float(done.stdout.split("samples, ")[1].split(" samples/s")[0])
        rows.append((name, sps, time.time() - t0))
    if not rows or not rows[0][0].endswith("(baseline)"):
        print("the baseline did not run; no ratios", file=sys.stderr)
        return 1
    base = rows[0][1]
    print(f"\n{args.model}, batch 64, {args.steps} steps, {os.cpu_count()} CPU cores\n")
    print(f"{'variant':<24} {'samples/s':>10} {'x baseline':>11} {'wall s (incl. start)':>21}")
    for name, sps, wall in rows:
        print(f"{name:<24} {sps:>10.1f} {sps / base:>11.2f} {wall:>21.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
