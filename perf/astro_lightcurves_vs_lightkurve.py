"""Light-curve reading and preprocessing: clipzoo.astro vs lightkurve on the same Kepler files, in one run.

    .venv/bin/python perf/astro_lightcurves_vs_lightkurve.py [--repeats 20] [--files F...]

Steps timed on both sides, each repeated ``--repeats`` times (median wall time):
  read      one *_llc.fits -> quality-masked, NaN-free cadences (lightkurve: ``lk.read(f).remove_nans()``)
  stitch    all quarters of the star, each divided by its median (lightkurve: ``LightCurveCollection.stitch()``)
  fold      phase-fold at a period (lightkurve: ``lc.fold(period, epoch_time=t0, normalize_phase=True)``)
  ls        Lomb-Scargle best period (lightkurve: ``lc.to_periodogram("lombscargle", ...)``)
  full      read + stitch + AstroM³ preprocessing to [L, 3] (lightkurve: read + stitch + fold + bin)

Results are checked equal where the two overlap (cadence counts, times, fluxes, normalised fluxes, phases,
periods) and the script exits non-zero if they are not. It prints our time, lightkurve's and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLIPZOO_SHARED_DATA") or REPO.parent / "shared" / "data")
DEFAULT_FILES = sorted((SHARED / "astro" / "lightcurves" / "kepler").glob("*_llc.fits"))


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="+", type=Path, default=DEFAULT_FILES, help="Kepler/K2 *_llc.fits of one star")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--period", type=float, default=14.5, help="folding period for the fold step [d]")
    parser.add_argument("--length", type=int, default=256, help="AstroM³ fixed length L")
    args = parser.parse_args(argv)
    if not args.files:
        print(f"no *_llc.fits under {SHARED}/astro/lightcurves/kepler: pass --files or set CLIPZOO_SHARED_DATA",
              file=sys.stderr)
        return 2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lightkurve as lk
    from clipzoo.astro.lightcurves import (
        LightCurvePreprocess,
        lombscargle_period,
        preprocess_lightcurve,
        read_lightcurve,
        stitch,
    )

    files = [str(f) for f in args.files]
    failures: list[str] = []
    rows: list[tuple[str, float, float]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        print(f"  [{'ok' if ok else 'DIFF'}] {name}: {detail}")
        if not ok:
            failures.append(name)

    # warm both (imports, astropy caches) before timing
    read_lightcurve(files[0])
    lk.read(files[0]).remove_nans()

    # -- read
    t_ours, ours = timed(lambda: [read_lightcurve(f) for f in files], args.repeats)
    t_lk, theirs = timed(lambda: [lk.read(f).remove_nans() for f in files], args.repeats)
    rows.append(("read", t_ours, t_lk))
    print("equality checks:")
    for f, a, b in zip(files, ours, theirs):
        name = Path(f).name
        check(f"read {name} cadences", a.n_valid == len(b), f"ours {a.n_valid} valid of {len(a)}, lightkurve {len(b)}")
        same_t = np.array_equal(a.time[a.valid], b.time.value)
        same_f = np.array_equal(a.flux[a.valid], b.flux.value.astype(np.float64))
        same_e = np.array_equal(a.flux_err[a.valid], b.flux_err.value.astype(np.float64))
        check(f"read {name} values", same_t and same_f and same_e, "TIME, PDCSAP_FLUX, PDCSAP_FLUX_ERR identical")

    # -- stitch
    t_ours, st = timed(lambda: stitch([read_lightcurve(f) for f in files]), args.repeats)
    t_lk, lst = timed(lambda: lk.LightCurveCollection([lk.read(f).remove_nans() for f in files]).stitch(), args.repeats)
    rows.append(("read+stitch", t_ours, t_lk))
    a_f = st.flux[st.valid]
    b_f = lst.flux.value.astype(np.float64)
    check("stitch length", a_f.size == b_f.size, f"ours {a_f.size}, lightkurve {b_f.size}")
    if a_f.size == b_f.size:
        err = float(np.max(np.abs(a_f - b_f)))
        check("stitch normalised flux", err < 1e-6, f"max |diff| {err:.2e}")

    # -- fold
    t0 = float(st.time[st.valid][0])
    t_ours, ph = timed(lambda: np.mod((st.time[st.valid] - t0) / args.period, 1.0), args.repeats)
    t_lk, fl = timed(lambda: lst.fold(period=args.period, epoch_time=t0, normalize_phase=True), args.repeats)
    rows.append(("fold", t_ours, t_lk))
    phase_lk = np.sort(np.mod(fl.time.value, 1.0))
    err = float(np.max(np.abs(np.sort(ph) - phase_lk)))
    check("fold phases", err < 1e-9, f"max |diff| of sorted phases {err:.2e}")

    # -- Lomb-Scargle
    t, y = st.time[st.valid], st.flux[st.valid]
    span = float(t.max() - t.min())
    t_ours, (p_ours, _) = timed(
        lambda: lombscargle_period(t, y, st.flux_err[st.valid], min_period=0.5, max_period=span / 2),
        max(1, args.repeats // 4))
    t_lk, pg = timed(lambda: lst.to_periodogram(method="lombscargle", minimum_period=0.5, maximum_period=span / 2,
                                                oversample_factor=5), max(1, args.repeats // 4))
    rows.append(("lomb-scargle", t_ours, t_lk))
    p_lk = float(pg.period_at_max_power.value)
    check("Lomb-Scargle period", abs(p_ours - p_lk) / p_lk < 0.01, f"ours {p_ours:.4f} d, lightkurve {p_lk:.4f} d")

    # -- full AstroM³ preprocessing (ours) vs lightkurve's read + stitch + fold + bin to L bins
    cfg = LightCurvePreprocess(length=args.length, fold="catalog")
    t_ours, _ = timed(
        lambda: preprocess_lightcurve(stitch([read_lightcurve(f) for f in files]), cfg, period=args.period),
        args.repeats)

    def lk_full():
        lc = lk.LightCurveCollection([lk.read(f).remove_nans() for f in files]).stitch()
        return lc.fold(period=args.period, epoch_time=t0, normalize_phase=True).bin(bins=args.length)

    t_lk, _ = timed(lk_full, args.repeats)
    rows.append(("full pipeline", t_ours, t_lk))

    print(f"\n{len(files)} file(s), {sum(len(o) for o in ours)} cadences, median of {args.repeats} repeats")
    print(f"{'step':<14} {'clipzoo [ms]':>13} {'lightkurve [ms]':>16} {'speed-up':>9}")
    for name, a, b in rows:
        print(f"{name:<14} {a * 1e3:>13.2f} {b * 1e3:>16.2f} {b / a:>8.1f}x")
    if failures:
        print(f"\nresults differ from lightkurve: {', '.join(failures)}", file=sys.stderr)
        return 1
    print("\nall overlapping results equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
