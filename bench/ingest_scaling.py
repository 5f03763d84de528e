"""Ingest engine scaling on this machine: samples/s with 1 vs 2 worker processes, Ray vs the process pool, and
peak RSS of one ingest process as the input grows (issue 10).

Inputs are the real files in the shared data folder, replicated so there are enough work units: DICOM (the
shared slices, copied into R folders with new study/series/instance UIDs so every copy is its own series),
JATS (the eLife package with its figures, R copies with renamed article ids) and GeoTIFF (the RGBN raster,
R copies). Each copy is one named input and one work unit (``unit_size=1``).

Baselines, measured in the same run, repeated and interleaved (config order alternates each round), medians
printed with min..max:
  - workers: ``--workers 1`` (units read in the driver process) vs ``--workers 2`` (process pool);
  - engine: the process pool (2 workers) vs ``--engine ray`` on a local Ray instance (``num_cpus=2``) started
    once before the timed rounds, as a team's cluster would be already running;
  - memory: peak RSS (``VmHWM`` of a fresh ``python`` child that runs one in-process ingest) at 1x, 10x
    and 50x the input, against the 1x run, plus the RSS of an interpreter that only imports the engine.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ingest_scaling.py [--copies 8] [--repeats 3] [--domains dicom,jats,geotiff]
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
    folders = []
    for c in range(copies):
        folder = root / f"pkg{c:03d}"
        shutil.copytree(package, folder)
        xml = folder / "elife-19405.xml"
        xml.chmod(0o644)
        text = re.sub(r"(<article-id[^>]*>)([^<]+)(</article-id>)", rf"\g<1>\g<2>r{c}\g<3>", xml.read_text())
        xml.write_text(text)
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


DOMAINS = {
    "dicom": ("biomed", "dicom", dicom_inputs, {"max_side": 256}),
    "jats": ("biomed", "jats", jats_inputs, {}),
    "geotiff": ("remote_sensing", "geotiff", geotiff_inputs, {"chip_size": 32}),
}


def make_source(domain: str):
    from clipzoo.core.plugins import get_registry

    dom, name, _, overrides = DOMAINS[domain]
    cls = get_registry().source(dom, name)
    return cls(cls.default_options(**overrides))


def timed_ingest(domain: str, inputs: list[Path], out: Path, **kw) -> tuple[float, int]:
    from clipzoo.core.ingest import run_ingest

    t0 = time.perf_counter()
    summary = run_ingest(make_source(domain), inputs, out, unit_size=1, progress=False, **kw)
    return time.perf_counter() - t0, summary["samples_written"]


RSS_CHILD = """
import resource, sys
sys.path.insert(0, {bench!r})
from ingest_scaling import make_source
from clipzoo.core.ingest import run_ingest
from pathlib import Path
inputs = [Path(p) for p in sys.argv[3:]]
if sys.argv[1] != "import-only":
    run_ingest(make_source(sys.argv[1]), inputs, sys.argv[2], unit_size=1, progress=False, workers=1)
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=8, help="replicas of each domain's files for the throughput runs")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--domains", default="dicom,jats,geotiff")
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--no-rss", action="store_true")
    args = p.parse_args()
    domains = [d for d in args.domains.split(",") if d]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    logging.basicConfig(level=logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="clipzoo-ingest-bench-"))
    try:
        ray = None
        if not args.no_ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        print(f"cores available: {len(os.sched_getaffinity(0))}; {args.copies} copies per domain, unit_size 1, "
              f"{args.repeats} interleaved rounds")
        configs = {"1 worker": {"workers": 1}, "2 workers": {"workers": 2}}
        if ray is not None:
            configs["ray (2 cpus)"] = {"workers": 2, "engine": "ray"}
        for domain in domains:
            inputs = DOMAINS[domain][2](tmp / domain / "in", args.copies)
            rates: dict[str, list[float]] = {c: [] for c in configs}
            samples = None
            for r in range(args.repeats):
                order = list(configs) if r % 2 == 0 else list(reversed(configs))
                for name in order:
                    out = tmp / domain / f"out-{r}-{name.replace(' ', '_')}"
                    seconds, n = timed_ingest(domain, inputs, out, **configs[name])
                    samples = n if samples is None else samples
                    assert n == samples, f"{name}: {n} samples, others {samples}"
                    rates[name].append(n / seconds)
                    shutil.rmtree(out)
            base = statistics.median(rates["1 worker"])
            pool = statistics.median(rates["2 workers"])
            print(f"\n{domain}: {samples} samples from {len(inputs)} units; samples/s median (min..max)")
            for name, vals in rates.items():
                ratio = statistics.median(vals) / (pool if name.startswith("ray") else base)
                against = "vs 2-worker pool" if name.startswith("ray") else "vs 1 worker"
                print(f"  {name:<14} {fmt(vals)}   x{ratio:.2f} {against}")
        if ray is not None:
            ray.shutdown()
        if not args.no_rss:
            print("\npeak RSS of one ingest process (workers=1, units read in-process), MB")
            baseline = peak_rss_mb("import-only", [], tmp / "none")
            print(f"  interpreter + engine imports only: {baseline:.0f}")
            for domain in domains:
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
