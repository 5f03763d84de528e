"""Near-duplicate detection of ``clipzoo curate``'s dedup step at 10k and 100k synthetic samples: time and peak RSS.

Each run is a fresh process (so its peak RSS is its own) holding N synthetic signatures: random 64-bit pHashes
of which 10% are planted near copies (1-6 bits flipped) of another sample, and random 12-word captions of which
10% are planted copies in another case/spacing. Timed: the caption MinHashes (pass 1's share) and the dedup
decision (pixel groups, pHash LSH, caption MinHash LSH, clusters). Rounds interleave the sizes; medians shown.
The baseline is the 10k run of the same round; the target is near-linear (<= 12x for 10x the data).

    .venv/bin/python perf/curate_scaling.py [--rounds 3] [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

WORDS = ("red green blue field river road house tree forest lake city port ship plane car bridge school park farm "
         "desert beach mountain cloud snow ice sand grass building tower church station square court track").split()


def child(n: int, seed: int) -> dict:
    import resource

    import numpy as np

    from clipzoo.core.curate.signatures import Signature, minhash_of, normalize_text
    from clipzoo.core.curate.steps import Dedup

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + \
        rng.integers(0, 2, size=n).astype(np.uint64)
    words = np.array(WORDS)
    texts = [" ".join(words[rng.integers(0, len(words), 12)]) for _ in range(n)]
    planted = rng.choice(n, size=n // 10, replace=False)
    for j in planted:
        src = int(rng.integers(0, n))
        if src == j:
            continue
        flip = np.uint64(0)
        for b in rng.choice(64, size=int(rng.integers(1, 7)), replace=False):
            flip |= np.uint64(1) << np.uint64(int(b))
        codes[j] = codes[src] ^ flip
        texts[j] = "  " + texts[src].upper().replace(" ", "  ")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    sigs = []
    for i in range(n):
        if i % 10_000 == 0:
            gc.freeze()  # as the driver does after each shard's signatures (see curate.engine)
        text = normalize_text(texts[i])
        sigs.append(Signature(key=f"s{i:07d}", order=i, pixels=f"{i:032x}", phash=int(codes[i]), text=text,
                              minhash=minhash_of(text, 128), has_image=True))
    t1 = time.perf_counter()
    result = Dedup().run(sigs, np.ones(n, dtype=bool))
    t2 = time.perf_counter()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "minhash_s": t1 - t0, "detect_s": t2 - t1, "removed": len(result.removed),
            "planted": int(len(planted)), "peak_rss_mb": rss_after / 1024, "rss_before_mb": rss_before / 1024}


def run_child(n: int, seed: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", str(n), "--seed", str(seed)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.child is not None:
        print(json.dumps(child(a.child, a.seed)))
        return
    small, large = a.sizes
    rows: dict[int, list[dict]] = {small: [], large: []}
    for r in range(a.rounds):  # interleaved: small, large, small, large ...
        for n in (small, large):
            res = run_child(n, seed=r)
            rows[n].append(res)
            print(f"round {r}: n={n:>7}  minhash {res['minhash_s']:6.2f} s  detect {res['detect_s']:6.2f} s  "
                  f"peak RSS {res['peak_rss_mb']:6.0f} MB (before signatures {res['rss_before_mb']:.0f} MB)  "
                  f"removed {res['removed']} (planted {res['planted']})", flush=True)

    def med(n: int, k: str) -> float:
        return statistics.median(x[k] for x in rows[n])

    def spread(n: int, k: str) -> str:
        values = [x[k] for x in rows[n]]
        return f"{min(values):.2f}-{max(values):.2f}"

    print(f"\nmedians over {a.rounds} rounds (range in brackets); baseline: the {small} run")
    for k, unit in (("detect_s", "s"), ("minhash_s", "s"), ("peak_rss_mb", "MB")):
        ratio = med(large, k) / med(small, k)
        print(f"  {k:<12} {small:>7}: {med(small, k):8.2f} {unit} [{spread(small, k)}]   {large:>7}: "
              f"{med(large, k):8.2f} {unit} [{spread(large, k)}]   ratio {ratio:5.2f}x for {large / small:.0f}x data")
    growth = (med(large, "peak_rss_mb") - med(large, "rss_before_mb")) / max(
        med(small, "peak_rss_mb") - med(small, "rss_before_mb"), 1e-9)
    print(f"  index memory (peak RSS minus RSS before signatures) ratio {growth:5.2f}x")
    ratio = med(large, "detect_s") / med(small, "detect_s")
    print(f"near-dup detection time ratio {ratio:.2f}x (target <= 12x): {'OK' if ratio <= 12 else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
