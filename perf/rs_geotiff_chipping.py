"""GeoTIFF chipping: windowed reads (clipzoo.remote_sensing.geotiff) vs a plain full-raster read.

Both ways cut the same chips (same size, stride, bands, nodata mask and percentile stretch) from the
same file; the baseline reads the whole raster with one ``src.read()`` and slices it in memory. Each
way runs in its own fresh process, so peak memory is that way's own:

- chips/s (wall clock, statistics pass included);
- peak RSS above the process's RSS after imports (Linux ``VmHWM`` reset through ``clear_refs``; GDAL's C
  buffers and block cache included);
- peak traced Python/numpy allocations (``tracemalloc``).

Printed as windowed/full ratios measured in the same run. Rasters: the shared Landsat B2 file and a
generated tiled 4-band uint16 GeoTIFF (``--size``, default 4096 px) to show the gap growing with size.

    .venv/bin/python perf/rs_geotiff_chipping.py [--size 4096] [--chip 256] [--raster PATH ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_landsat() -> Path | None:
    root = Path(os.environ.get("CLIPZOO_SHARED_DATA", REPO.parent / "shared" / "data"))
    path = root / "remote_sensing" / "geotiff" / "LC08_L1TP_224077_20200518_20200518_01_RT_B2_60m.TIF"
    return path if path.is_file() else None


def make_raster(path: Path, size: int, bands: int = 4) -> Path:
    """A tiled, LZW-compressed uint16 GeoTIFF with smooth structure and a zero (nodata) border; written in strips."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype="uint16", nodata=0, crs="EPSG:32633",
                   transform=Affine(10, 0, 500000, 0, -10, 5000000), tiled=True, blockxsize=256, blockysize=256,
                   compress="lzw")
    rng = np.random.default_rng(0)
    x = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 512):
            h = min(512, size - row)
            y = np.arange(row, row + h, dtype=np.float32)[:, None]
            base = 2000 + 1500 * np.sin(x[None, :] / 97.0) * np.cos(y / 131.0)
            block = np.stack([base + 300 * b + rng.integers(0, 50, base.shape) for b in range(bands)]).astype("uint16")
            block[:, :, : size // 20] = 0  # nodata border, as on Landsat scene edges
            dst.write(block, window=Window(0, row, size, h))
    return path


# -- workers (run in a fresh process each) ----------------------------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> int:
    """Reset the kernel's RSS high-water mark (Linux clear_refs 5) and return the current RSS in KiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmRSS")
    except OSError:  # not Linux, or not allowed: fall back to the peak so far
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kib() -> int:
    try:
        return _status_kib("VmHWM")
    except (OSError, RuntimeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def work(mode: str, path: str, chip: int, cache_mb: int) -> dict:
    import tracemalloc

    import numpy as np
    import rasterio  # noqa: F401  (imports are not what is measured)

    from clipzoo.remote_sensing import geotiff as gt

    base_rss = reset_peak_rss()
    tracemalloc.start()
    start = time.perf_counter()
    chips = 0
    checksum = 0.0
    with rasterio.Env(GDAL_CACHEMAX=cache_mb), gt.open_raster(path) as src:
        bands = gt.resolve_bands("all", src)
        nodata = gt.nodata_values(src, [0])
        if mode == "windowed":
            stats = gt.band_statistics(src, bands, nodata)
            for c in gt.iter_chips(src, bands, chip, chip, nodata):
                if c.nodata_fraction < 1.0:
                    checksum += float(gt.normalize(c.data, stats, c.valid).sum())
                    chips += 1
        else:  # the plain way: whole raster in memory, stats and chips from the array
            data = src.read(bands)
            ok = gt.valid_mask(data, nodata)
            lows, highs = [], []
            for i in range(len(bands)):
                lo, hi = np.percentile(data[i][ok].astype(np.float64), gt.DEFAULT_PERCENTILES)
                lows.append(lo)
                highs.append(hi)
            stats = [gt.BandStats(b, 0, 0, 0, 0, 0, lo, hi, gt.DEFAULT_PERCENTILES, "full")
                     for b, lo, hi in zip(bands, lows, highs)]
            for row in gt.chip_offsets(src.height, chip, chip):
                for col in gt.chip_offsets(src.width, chip, chip):
                    part = data[:, row:row + chip, col:col + chip].astype(np.float32)
                    valid = ok[row:row + chip, col:col + chip]
                    if valid.any():
                        checksum += float(gt.normalize(part, stats, valid).sum())
                        chips += 1
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    peak_rss = peak_rss_kib()
    return {"mode": mode, "chips": chips, "seconds": seconds, "chips_per_s": chips / seconds,
            "rss_mib": (peak_rss - base_rss) / 1024, "traced_mib": traced_peak / 2**20, "checksum": checksum}


def run_worker(mode: str, path: Path, chip: int, cache_mb: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, str(path), "--chip", str(chip),
                          "--gdal-cache-mb", str(cache_mb)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} worker failed on {path}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raster", action="append", type=Path, default=[], help="raster(s) to chip (default: the "
                        "shared Landsat B2 file + a generated one)")
    parser.add_argument("--size", type=int, default=4096, help="side of the generated raster (0: none)")
    parser.add_argument("--chip", type=int, default=256)
    parser.add_argument("--gdal-cache-mb", type=int, default=64, help="GDAL block cache for both ways (the "
                        "geotiff source's --gdal-cache-mb)")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(work(args.worker[0], args.worker[1], args.chip, args.gdal_cache_mb)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        rasters = list(args.raster)
        if not rasters and (landsat := shared_landsat()) is not None:
            rasters.append(landsat)
        if args.size and not args.raster:
            t = time.perf_counter()
            rasters.append(make_raster(Path(tmp) / f"synthetic_{args.size}.tif", args.size))
            print(f"generated {args.size}x{args.size}x4 uint16 raster in {time.perf_counter() - t:.1f} s")
        print(f"{'raster':<34} {'way':<9} {'chips':>6} {'chips/s':>9} {'peak RSS MiB':>13} {'traced MiB':>11}")
        for path in rasters:
            res = {mode: run_worker(mode, path, args.chip, args.gdal_cache_mb) for mode in ("windowed", "full")}
            if res["windowed"]["chips"] != res["full"]["chips"]:
                raise RuntimeError(f"the two ways cut different chips from {path.name}: {res}")
            # above DEFAULT_STATS_PIXELS the windowed way stretches with decimated-read percentiles
            drift = abs(res["windowed"]["checksum"] - res["full"]["checksum"]) / max(1.0, abs(res["full"]["checksum"]))
            for mode, r in res.items():
                print(f"{path.name[:34]:<34} {mode:<9} {r['chips']:>6} {r['chips_per_s']:>9.1f} {r['rss_mib']:>13.1f}"
                      f" {r['traced_mib']:>11.1f}")
            w, f = res["windowed"], res["full"]
            print(f"{'':<34} windowed/full: speed x{w['chips_per_s'] / f['chips_per_s']:.2f}, "
                  f"peak RSS x{w['rss_mib'] / max(f['rss_mib'], 1e-9):.3f}, "
                  f"traced x{w['traced_mib'] / max(f['traced_mib'], 1e-9):.3f}; chip values differ by {drift:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
