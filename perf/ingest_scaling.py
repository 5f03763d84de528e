"""Ingest engine scaling on this machine: samples/s with 1 vs 2 worker processes, Ray vs the process pool, and
peak RSS of one ingest process as the input grows (issue 10).

Inputs are the real files in the shared data folder, replicated so there are enough work units and enough work
that a run's fixed costs (pool start, planning, manifest) are a small part of it: DICOM (the shared slices,
copied into R study folders with new study/series/instance UIDs so every copy is its own series; default 24
folders, 96 files, 23 MB), JATS (the eLife package with its figures, R copies with renamed article ids, figures
hard-linked; default 256 articles) and GeoTIFF (the RGBN raster, R copies; default 160 rasters, 7680 chips of
32 px), and one large raster (``geotiff-large``: the RGBN raster's pixels tiled 8 x 8, 3536 chips of 64 px at
stride 32, which the source reads as 4 windows of chip rows, so two workers split one raster). The unit size is
the engine's own default (derived from the input count, ``--unit-size`` overrides).
JATS keeps units of 64 articles (its duplicate checks span a unit), so 256 articles make 4 units; with 120 they
made 2 of 64 and 56, and two workers could gain at most 120/64 = 1.9x whatever the engine did. Its copies share
one figure image, so the bench runs it with ``--near-duplicates keep``: every figure is still decoded, hashed and
checked, and is also written (flagged), as distinct figures of a real corpus would be.

Each domain runs in a fresh Python process, as one ``clipzoo ingest`` would: its process pool's forkserver
preloads that source's ``worker_imports`` (one process running several sources keeps the first one's preload).
In it, every configuration first gets one untimed warm-up run, then ``--repeats`` timed rounds, interleaved
(the order of the configurations alternates each round), on the same inputs, in two phases:
  - workers: ``--workers 1`` (units read in the driver process) vs ``--workers 2`` (process pool), with no Ray
    instance running (an idle local Ray instance takes about 5% of a core);
  - engine: the process pool (2 workers) vs ``--engine ray`` on a local Ray instance (``num_cpus=2``) started
    once before this phase, as a team's cluster would be already running; both sides run beside it.
Ratios are paired (the two sides of one round), printed as the median with min..max over the rounds. Each round
of the workers phase also measures the machine's own ceiling: a fixed pure-Python loop run twice in one process
vs once in each of two processes (ideal 2.0x; on a shared host it drifts, 1.3-2.1x seen here within minutes).
The 2-worker ratio is printed beside it and as a fraction of it (parallel efficiency), since a 2-core VM that
gives two processes 1.5x cannot show 1.7x for any engine. The machine load (``os.getloadavg``) before and after
each domain is printed too. Memory: peak RSS (``VmHWM`` of a fresh ``python`` child that runs one in-process
ingest, i.e. one worker's work) at 1x, 10x and 50x the input, against the 1x run, plus the RSS of an interpreter
that only imports the engine.

    OMP_NUM_THREADS=1 .venv/bin/python perf/ingest_scaling.py [--copies N] [--repeats 5]
        [--domains dicom,jats,geotiff,geotiff-large]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLIPZOO_SHARED_DATA", REPO.parent / "shared" / "data"))


# -- replicated inputs ----------------------------------------------------------------------------
def dicom_inputs(root: Path, copies: int) -> list[Path]:
    import pydicom

    files = sorted((SHARED / "biomed/medical_images/dicom").glob("*.dcm"))
    folders = []
    for c in range(copies):
        folder = root / f"study{c:03d}"
        folder.mkdir(parents=True)
        for f in files:
            ds = pydicom.dcmread(f)
            for tag in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                if tag in ds:
                    ds[tag].value = f"{ds[tag].value}.{c + 1}"[:64]
            if "file_meta" in dir(ds) and "MediaStorageSOPInstanceUID" in ds.file_meta:
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(folder / f.name, enforce_file_format=False)
        folders.append(folder)
    return folders


def jats_inputs(root: Path, copies: int) -> list[Path]:
    package = SHARED / "biomed/jats_packages/elife-19405"
    xml_name = "elife-19405.xml"
    text = (package / xml_name).read_text()
    folders = []
    for c in range(copies):
        folder = root / f"pkg{c:03d}"
        folder.mkdir(parents=True)
        for f in package.iterdir():  # figures: the same bytes in every copy; a hard link saves disk and time
            if f.name != xml_name:
                try:
                    os.link(f, folder / f.name)
                except OSError:  # another filesystem
                    shutil.copyfile(f, folder / f.name)
        renamed = re.sub(r"(<article-id[^>]*>)([^<]+)(</article-id>)", rf"\g<1>\g<2>r{c}\g<3>", text)
        (folder / xml_name).write_text(renamed)
        folders.append(folder)
    return folders


def geotiff_inputs(root: Path, copies: int) -> list[Path]:
    root.mkdir(parents=True)
    src = SHARED / "remote_sensing/geotiff/rgbn_suba.tif"
    out = []
    for c in range(copies):
        dst = root / f"rgbn_{c:03d}.tif"
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def large_raster_inputs(root: Path, copies: int) -> list[Path]:
    """One raster: the RGBN raster's real pixels tiled ``copies`` x ``copies`` times (default 8: 2208 x 1696 px,
    tiled 256 x 256 blocks), which the GeoTIFF source reads as several work units (windows of chip rows)."""
    import numpy as np
    import rasterio

    root.mkdir(parents=True)
    with rasterio.open(SHARED / "remote_sensing/geotiff/rgbn_suba.tif") as src:
        data, profile = src.read(), src.profile
    tiled = np.tile(data, (1, copies, copies))
    profile.update(width=tiled.shape[2], height=tiled.shape[1], tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(root / "large.tif", "w", **profile) as dst:
        dst.write(tiled)
    return [root / "large.tif"]


DOMAINS = {
    "dicom": ("biomed", "dicom", dicom_inputs, {"max_side": 256}),
    "jats": ("biomed", "jats", jats_inputs, {"near_duplicates": "keep"}),
    "geotiff": ("remote_sensing", "geotiff", geotiff_inputs, {"chip_size": 32}),
    "geotiff-large": ("remote_sensing", "geotiff", large_raster_inputs, {"chip_size": 64, "stride": 32}),
}
#: Copies per domain by default: enough that one worker reads for several seconds (about 4-10 s here).
DEFAULT_COPIES = {"dicom": 24, "jats": 256, "geotiff": 160, "geotiff-large": 8}
#: Domains whose peak RSS is measured at 1x, 10x and 50x the input (a copy of the large raster is its tile factor)
RSS_DOMAINS = ("dicom", "jats", "geotiff")


def make_source(domain: str):
    from clipzoo.core.plugins import get_registry

    dom, name, _, overrides = DOMAINS[domain]
    cls = get_registry().source(dom, name)
    return cls(cls.default_options(**overrides))


def timed_ingest(domain: str, inputs: list[Path], out: Path, **kw) -> tuple[float, int, int]:
    """(seconds, samples, units) of one ingest of ``inputs`` into ``out`` (removed afterwards)."""
    from clipzoo.core.ingest import run_ingest

    t0 = time.perf_counter()
    summary = run_ingest(make_source(domain), inputs, out, progress=False, **kw)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out)
    return seconds, summary["samples_written"], summary["units"]


RSS_CHILD = """
import resource, sys
sys.path.insert(0, {bench!r})
from ingest_scaling import make_source
from clipzoo.core.ingest import run_ingest
from pathlib import Path
inputs = [Path(p) for p in sys.argv[3:]]
if sys.argv[1] != "import-only":
    run_ingest(make_source(sys.argv[1]), inputs, sys.argv[2], progress=False, workers=1)
# VmHWM is this process image's own peak (a forked child's ru_maxrss would include the parent's pages)
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_rss_mb(domain: str, inputs: list[Path], out: Path) -> float:
    done = subprocess.run([sys.executable, "-c", RSS_CHILD.format(bench=str(Path(__file__).parent)), domain,
                           str(out), *map(str, inputs)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"RSS child for {domain} failed: {done.stderr[-2000:]}")
    return int(done.stdout.split()[-1]) / 1024  # VmHWM is in kB


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}  ({min(values):.1f}..{max(values):.1f})"


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def tree_mb(paths: list[Path]) -> float:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()) / 1e6


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


class Ceiling:
    """What two processes get from this machine now: a fixed pure-Python loop twice in this process vs once in
    each of two (already started) pool processes. No I/O, no shared state: 2.0x on two free cores."""

    N = 4_000_000  # about 0.3 s per loop here

    def __init__(self):
        import concurrent.futures as cf
        import multiprocessing

        self.pool = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
        list(self.pool.map(_spin, [1000, 1000]))

    def ratio(self) -> float:
        t0 = time.perf_counter()
        _spin(self.N)
        _spin(self.N)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(self.pool.map(_spin, [self.N, self.N]))
        return one / (time.perf_counter() - t0)

    def close(self) -> None:
        self.pool.shutdown()


def _rounds(domain: str, inputs: list[Path], tmp: Path, configs: dict[str, dict], repeats: int,
            unit_size: int | None, ceiling: Ceiling | None = None) -> tuple[dict[str, list[float]], list[float], int, int]:
    """Seconds per configuration per timed round (after one untimed warm-up of each), the ceiling per round, and
    the (samples, units) every run agreed on."""
    seconds: dict[str, list[float]] = {c: [] for c in configs}
    ceilings: list[float] = []
    samples = units = None
    for r in range(-1, repeats):  # round -1: the untimed warm-up of every configuration
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        if ceiling is not None and r >= 0 and r % 2 == 0:
            ceilings.append(ceiling.ratio())
        for name in order:
            t, n, u = timed_ingest(domain, inputs, tmp / f"out-{r}-{name.replace(' ', '_')}", unit_size=unit_size,
                                   **configs[name])
            samples, units = (n, u) if samples is None else (samples, units)
            assert (n, u) == (samples, units), f"{name}: {n} samples in {u} units, others {samples} in {units}"
            if r >= 0:
                seconds[name].append(t)
        if ceiling is not None and r >= 0 and r % 2 == 1:
            ceilings.append(ceiling.ratio())
    return seconds, ceilings, samples, units


def _ratio_line(name: str, samples: int, vals: list[float], base: list[float] | None, against: str) -> str:
    line = f"  {name:<14} {fmt([samples / t for t in vals])}"
    if base is not None:
        ratios = [b / t for b, t in zip(base, vals)]
        line += f"   x{statistics.median(ratios):.2f} ({min(ratios):.2f}..{max(ratios):.2f}) vs {against}"
    return line


def one_domain(domain: str, copies: int, repeats: int, unit_size: int | None, use_ray: bool, tmp: Path) -> None:
    """Time one domain's configurations (in this process, which is fresh: see the module docstring)."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    inputs = DOMAINS[domain][2](tmp / "in", copies)
    before = load()
    ceiling = Ceiling()
    try:
        workers = {"1 worker": {"workers": 1}, "2 workers": {"workers": 2}}
        seconds, ceilings, samples, units = _rounds(domain, inputs, tmp, workers, repeats, unit_size, ceiling)
    finally:
        ceiling.close()
    print(f"\n{domain}: {samples} samples from {len(inputs)} inputs ({tree_mb(inputs):.0f} MB) in {units} units; "
          f"1 worker reads them in {statistics.median(seconds['1 worker']):.1f} s; {before} -> {load()}")
    print("  samples/s median (min..max) over the rounds; ratio: paired per round, median (min..max)")
    print(_ratio_line("1 worker", samples, seconds["1 worker"], None, ""))
    print(_ratio_line("2 workers", samples, seconds["2 workers"], seconds["1 worker"], "1 worker"))
    speedups = [a / b for a, b in zip(seconds["1 worker"], seconds["2 workers"])]
    efficiency = [s / c for s, c in zip(speedups, ceilings)]
    print(f"  machine ceiling (2 processes of a pure-Python loop vs 1, same rounds): x{statistics.median(ceilings):.2f} "
          f"({min(ceilings):.2f}..{max(ceilings):.2f}); 2 workers reach {statistics.median(efficiency):.0%} of it "
          f"({min(efficiency):.0%}..{max(efficiency):.0%})")
    if use_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        try:
            engines = {"2 workers": {"workers": 2}, "ray (2 cpus)": {"workers": 2, "engine": "ray"}}
            ray_seconds, _, ray_samples, ray_units = _rounds(domain, inputs, tmp / "ray", engines, repeats, unit_size)
        finally:
            ray.shutdown()
        assert (ray_samples, ray_units) == (samples, units), "the Ray phase wrote another shard set"
        print("  with a local Ray instance running:")
        print(_ratio_line("2 workers", samples, ray_seconds["2 workers"], None, ""))
        print(_ratio_line("ray (2 cpus)", samples, ray_seconds["ray (2 cpus)"], ray_seconds["2 workers"],
                          "2 workers"))
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=None, help="replicas of each domain's files for the throughput runs "
                   f"(default per domain: {DEFAULT_COPIES})")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per configuration (after one warm-up)")
    p.add_argument("--unit-size", type=int, default=None, help="inputs per work unit (default: the engine's own)")
    p.add_argument("--domains", default="dicom,jats,geotiff,geotiff-large")
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--no-rss", action="store_true")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: time this domain in this process
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.one:
        one_domain(args.one, args.copies or DEFAULT_COPIES[args.one], args.repeats, args.unit_size,
                   not args.no_ray, Path(args.tmp))
        return 0
    domains = [d for d in args.domains.split(",") if d]
    tmp = Path(tempfile.mkdtemp(prefix="clipzoo-ingest-bench-"))
    try:
        print(f"cores available: {len(os.sched_getaffinity(0))}; {load()}; 1 warm-up + {args.repeats} interleaved "
              f"rounds per configuration; unit size {args.unit_size or 'engine default'}")
        for domain in domains:
            cmd = [sys.executable, __file__, "--one", domain, "--repeats", str(args.repeats), "--tmp",
                   str(tmp / domain)]
            cmd += ["--copies", str(args.copies)] if args.copies else []
            cmd += ["--unit-size", str(args.unit_size)] if args.unit_size else []
            cmd += ["--no-ray"] if args.no_ray else []
            done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
            if done.returncode != 0:
                raise SystemExit(f"{domain}: the timing process failed (exit {done.returncode})")
        if not args.no_rss:
            print("\npeak RSS of one ingest process (workers=1, units read in-process), MB")
            baseline = peak_rss_mb("import-only", [], tmp / "none")
            print(f"  interpreter + engine imports only: {baseline:.0f}")
            for domain in (d for d in domains if d in RSS_DOMAINS):
                row = []
                for scale in (1, 10, 50):
                    inputs = DOMAINS[domain][2](tmp / domain / f"rss{scale}", scale)
                    row.append(peak_rss_mb(domain, inputs, tmp / domain / f"rss-out{scale}"))
                print(f"  {domain:<8} 1x {row[0]:6.0f}   10x {row[1]:6.0f} (x{row[1] / row[0]:.2f})   "
                      f"50x {row[2]:6.0f} (x{row[2] / row[0]:.2f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
