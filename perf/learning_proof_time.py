"""How long the learning proof (tests/core/test_learning.py) takes here, and how soon it reaches its target.

The test is bounded by steps only (560 steps, text->image R@1 >= 0.8 on 100 held-out pairs; chance 0.01),
so its duration belongs here. Each repeat trains exactly the test's run, saving a checkpoint every
``--every`` steps; afterwards (outside the timed loop) every checkpoint's weights are benchmarked. Printed
per repeat and as the median over repeats: steps/s, wall time of the whole run, the first checkpoint step
reaching the target and the training time to it, and that time as a fraction of the whole run (the named
baseline, measured in the same repeat). R@1 over 100 queries has a binomial standard error of about
sqrt(p(1-p)/100), i.e. +-0.04 near 0.8. Training is seeded, so R@1 repeats exactly; only the times vary.

    OMP_NUM_THREADS=1 .venv/bin/python perf/learning_proof_time.py [--repeats 3] [--every 80]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
from test_learning import STEPS, TARGET_R1, _t2i_r1, proof_config, proof_shards  # noqa: E402


def _checkpoint_r1(folder: Path, work: Path) -> float:
    from clipzoo.core.models import create_model, save_pretrained
    from clipzoo.core.train.checkpoint import load_file

    model = create_model("clipzoo-tiny-32")
    model.load_state_dict(load_file(folder / "training_state.pt")["model"])
    return _t2i_r1(save_pretrained(model, work / f"eval-{folder.name}"), work / "cache")


def one_repeat(shards: Path, work: Path, every: int) -> dict:
    from clipzoo.core.train import load_config, train

    t0 = time.perf_counter()
    result = train(load_config(base=proof_config(shards, work / "run", checkpoint_every=every)))
    wall = time.perf_counter() - t0
    curve = []
    for folder in sorted((work / "run" / "checkpoints").glob("step-????????")):
        meta = json.loads((folder / "meta.json").read_text())
        curve.append((meta["step"], meta["elapsed_s"], _checkpoint_r1(folder, work)))
    hit = next(((s, e, r) for s, e, r in curve if r >= TARGET_R1), None)
    return {"steps": result.steps, "wall_s": wall, "steps_per_s": result.steps / wall, "curve": curve, "hit": hit,
            "train_s": curve[-1][1] if curve else float("nan")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--every", type=int, default=80, help="checkpoint (and evaluate) every N steps")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="clipzoo-learning-proof-"))
    shards = proof_shards(root / "shards")
    rows = []
    for i in range(args.repeats):
        row = one_repeat(shards, root / f"r{i}", args.every)
        rows.append(row)
        hit = row["hit"]
        reached = (f"R@1 {hit[2]:.2f} at step {hit[0]} after {hit[1]:.0f} s ({hit[1] / row['train_s']:.2f} of the run)"
                   if hit else "target not reached")
        print(f"repeat {i + 1}: {row['steps']} steps in {row['wall_s']:.0f} s ({row['steps_per_s']:.2f} steps/s); "
              f"{reached}; curve " + ", ".join(f"{s}:{r:.2f}" for s, _, r in row["curve"]))
    final = rows[0]["curve"][-1][2] if rows[0]["curve"] else float("nan")
    se = math.sqrt(final * (1 - final) / 100)
    reached = [r for r in rows if r["hit"]]
    print(f"\nlearning proof ({STEPS} steps, target t2i R@1 >= {TARGET_R1}, chance 0.01), {args.repeats} repeats:")
    print(f"  final R@1 {final:.2f} +- {se:.2f} (binomial s.e., 100 queries)")
    print(f"  steps/s median {statistics.median(r['steps_per_s'] for r in rows):.2f} "
          f"(min {min(r['steps_per_s'] for r in rows):.2f}, max {max(r['steps_per_s'] for r in rows):.2f})")
    print(f"  whole run (baseline) median {statistics.median(r['wall_s'] for r in rows):.0f} s")
    if reached:
        print(f"  time to target median {statistics.median(r['hit'][1] for r in reached):.0f} s at step "
              f"{reached[0]['hit'][0]}, {statistics.median(r['hit'][1] / r['train_s'] for r in reached):.2f} x the "
              f"whole run ({len(reached)} of {len(rows)} repeats reached it)")
    else:
        print("  the target was not reached in any repeat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
