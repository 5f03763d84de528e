"""Which initialisation of the new bands works best when RGB weights become a 4-band (R,G,B,NIR) model?

Baseline: the same 4-band model trained from scratch, measured in the same run. An RGB model (``rs-sim-rgb-tiny``)
is first trained on simulated RGB scenes (seed 7); its weights then start ``rs-sim-tiny`` (4 bands) with each
``band_adaptation.init`` (``mean`` of the RGB kernels, ``zeros``, ``copy`` NIR <- red), which is trained for the
same steps with the same seed on the 4-band scenes (seed 0) and scored zero-shot on held-out scenes (seed 1000):
top-1 over six classes (chance 1/6; twins in RGB, so the RGB model itself is capped near 1/2), with a seeded
bootstrap 95% interval over the 600 test scenes (core's harness), and the final training loss.

    .venv/bin/python perf/rs_band_init.py [--steps 30 100 300] [--pretrain-steps 200]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

INITS = {"scratch (baseline)": None, "mean": {"init": "mean"}, "zeros": {"init": "zeros"},
         "copy nir<-red": {"init": "copy", "copy_from": {"nir": "red"}}}


def _train(shards: Path, out: Path, config, steps: int, pretrained: str | None = None):
    from clipzoo.core.train import load_config, train

    return train(load_config(base={
        "run": {"output_dir": str(out), "mlflow": False, "progress": False, "seed": 0, "log_every": 10},
        "model": {"config": config, "pretrained": pretrained},
        "data": {"train": str(shards), "batch_size": 64, "workers": 0, "shuffle_buffer": 500},
        "optim": {"lr": 2e-3, "warmup_steps": 20, "weight_decay": 0.05},
        "train": {"max_steps": steps, "checkpoint_every": steps, "threads": 1}}))


def _score(model_dir: Path, bands: str, cache: Path) -> dict:
    """The harness's entry for the held-out scenes: top-1, its chance level and bootstrap interval."""
    from clipzoo.core.bench.harness import run_benchmark

    task = "remote_sensing/simulated-zeroshot"
    results = run_benchmark(str(model_dir), [task], log=False, print_table=False, cache_dir=cache,
                            task_options={task: {"bands": bands}})
    return results["tasks"][task]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, nargs="+", default=[30, 100, 300])
    p.add_argument("--pretrain-steps", type=int, default=200)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from clipzoo.core.ingest import run_ingest
    from clipzoo.remote_sensing import simulate
    from clipzoo.remote_sensing.plugin import CONFIG_DIR
    from clipzoo.remote_sensing.sources import SimulatedScenesSource

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, bands, seed in (("rgb", "rgb", 7), ("rgbn", "rgbn", 0)):
            opts = SimulatedScenesSource.default_options(bands=bands, count=1200, seed=seed)
            run_ingest(SimulatedScenesSource(opts), [], tmp / name, progress=False)
        rgb = _train(tmp / "rgb", tmp / "pretrain", "rs-sim-rgb-tiny", args.pretrain_steps)
        rgb_top1 = _score(rgb.model_dir, "rgb", tmp / "cache")["metrics"]["top1"]
        print(f"RGB model after {args.pretrain_steps} steps: top-1 {rgb_top1:.3f} on RGB scenes (cap ~0.5)")
        base = json.loads((CONFIG_DIR / "rs-sim-tiny.json").read_text())
        nir = simulate.band_statistics()["nir"]
        print(f"{'init':<20} {'steps':>5} {'top-1':>6} {'95% interval':>15} {'final loss':>10}")
        for steps in args.steps:
            for label, adaptation in INITS.items():
                config = dict(base)
                if adaptation is not None:
                    config["band_adaptation"] = {**adaptation, "stats": {"nir": list(nir)}}
                res = _train(tmp / "rgbn", tmp / f"{label}-{steps}".replace(" ", "_"), config, steps,
                             pretrained=None if adaptation is None else str(rgb.model_dir))
                entry = _score(res.model_dir, "rgbn", tmp / "cache")
                (lo, hi), top1 = entry["interval"]["top1"], entry["metrics"]["top1"]
                loss = res.history[-1]["loss"] if res.history else float("nan")
                print(f"{label:<20} {steps:>5} {top1:>6.3f} [{lo:.3f}, {hi:.3f}] {loss:>10.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
