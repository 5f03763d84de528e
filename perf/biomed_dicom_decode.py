"""clipzoo.biomed DICOM per-file read vs pydicom's own decode + modality LUT + VOI LUT, same files, same run.

"Ours" is what ``clipzoo ingest biomed dicom`` does per file: the planning read that puts whole series into one work
unit (``read_series_key``: the SeriesInstanceUID alone), the header pass for series grouping and ordering
(``read_header``), the pixel read given that header (``read_dicom``: only the pixel data is read; modality LUT,
VOI/window, MONOCHROME1 inversion, colour handling, uint8), the PIL image per frame and, for images larger than
``--max-side``, the thumbnail. The baseline is what a pydicom user writes for the same display images: ``dcmread`` +
``pixel_array`` (+ ``apply_modality_lut`` + ``apply_voi_lut`` for grey images, ``apply_color_lut`` for palette
colour), the values scaled to uint8 (min..max), the PIL image per frame and the same thumbnail. Where the two sides
cannot do the same work: the baseline groups no series (a pydicom user grouping series would read each header first
too; ours pays for it), it has no CT preset window (files without a window stay min..max), no MONOCHROME1 inversion,
and no metadata extraction. Both sides run interleaved in the same loop, file by file, who goes first rotating, for
``--rounds`` rounds; printed are the ratio of the corpus totals per round (median and quartiles over rounds), the
median over files of the per-file median ratio (the header pass + pixel read + images, i.e. a work unit's cost per
file; and once more with the driver's planning read added), and the same for the per-slice part alone (the pixel
read and images given the header pass, which the series grouping needs once per file anyway).

    .venv/bin/python perf/biomed_dicom_decode.py [--rounds 7] [--files DIR ...]

Files: every file of pydicom's wheel corpus (``pydicom/data/test_files``) that pydicom decodes, plus the
shared data's DICOM files (``$CLIPZOO_SHARED_DATA/biomed/medical_images/dicom``, a 1955x1841 JPEG-2000 chest
X-ray among them). Targets (issue 10/16): corpus <= 2x, per file <= 1.5x, per slice <= 1.5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _decodable(folders: list[Path]) -> list[Path]:
    import pydicom

    found = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                pydicom.dcmread(path).pixel_array
            except Exception:
                continue
            found.append(path)
    return found


def _images(frames, max_side: int) -> None:
    """PIL images of ``uint8 [frames, rows, columns(, 3)]``, thumbnailed like the ingest does."""
    from PIL import Image

    for frame in frames:
        image = Image.fromarray(frame)
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)


def ours(path: Path, max_side: int = 1024) -> tuple[float, float]:
    """The whole per-file work of the ingest; returns the seconds of its planning read and of its per-slice part
    (pixels + images), so that the header pass + pixel read can be told from the planning read."""
    from clipzoo.biomed.dicom import read_dicom, read_header, read_series_key

    start = time.perf_counter()
    read_series_key(path)  # planning (driver): which unit the file's series goes to
    planned = time.perf_counter()
    header = read_header(path)  # the unit's header pass: grouping and order
    read = time.perf_counter()
    frames, _ = read_dicom(path, header=header)
    _images(frames, max_side)
    return planned - start, time.perf_counter() - read


def baseline(path: Path, max_side: int = 1024) -> None:
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.PhotometricInterpretation)
    if int(ds.get("SamplesPerPixel", 1)) == 1 and photometric.startswith("MONOCHROME"):
        arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    elif photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.rint((arr - lo) * (255.0 / max(hi - lo, 1e-12))).astype(np.uint8)
    _images(arr if frames > 1 else arr[None], max_side)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def main(argv: list[str] | None = None) -> int:
    import logging

    import pydicom

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("CLIPZOO_SHARED_DATA") or REPO.parent / "shared" / "data")
    parser.add_argument("--files", nargs="*", type=Path,
                        default=[Path(pydicom.__file__).parent / "data" / "test_files",
                                 shared / "biomed" / "medical_images" / "dicom"])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved passes over the files")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")

    files = _decodable([f for f in args.files if f.exists()])
    if not files:
        sys.exit("no decodable DICOM files found; pass --files DIR")
    for path in files:  # warm imports and the OS cache on both sides
        ours(path)
        baseline(path)
    per_file: dict[Path, list[float]] = {p: [] for p in files}
    with_plan: dict[Path, list[float]] = {p: [] for p in files}
    per_slice: dict[Path, list[float]] = {p: [] for p in files}
    round_ratio, ours_total, base_total = [], [], []
    for r in range(args.rounds):
        t_ours = t_base = 0.0
        for i, path in enumerate(files):
            times: dict[str, float] = {}
            for name in (("ours", "base") if (i + r) % 2 == 0 else ("base", "ours")):  # rotate who goes first
                start = time.perf_counter()
                parts = ours(path) if name == "ours" else baseline(path)
                times[name] = time.perf_counter() - start
                if name == "ours":
                    times["plan"], times["pixels"] = parts
            t_ours += times["ours"]
            t_base += times["base"]
            with_plan[path].append(times["ours"] / times["base"])
            per_file[path].append((times["ours"] - times["plan"]) / times["base"])
            per_slice[path].append(times["pixels"] / times["base"])
        round_ratio.append(t_ours / t_base)
        ours_total.append(t_ours)
        base_total.append(t_base)

    file_medians = sorted(((statistics.median(v), p) for p, v in per_file.items()), reverse=True)
    print(f"{len(files)} decodable DICOM files x {args.rounds} interleaved rounds")
    print(f"  pydicom dcmread+pixel_array+modality/VOI LUT+uint8+image: {statistics.median(base_total) * 1000:8.1f} "
          "ms per pass")
    print(f"  clipzoo plan+header+pixel read+image:                     {statistics.median(ours_total) * 1000:8.1f} "
          "ms per pass")
    q1, med, q3 = _quartiles(round_ratio)
    print(f"  corpus ratio ours/pydicom: median {med:.2f}x (quartiles {q1:.2f}-{q3:.2f}); target <= 2x")
    q1, med, q3 = _quartiles([m for m, _ in file_medians])
    print(f"  per-file ratio ours (header pass + pixel read)/pydicom: median {med:.2f}x "
          f"(quartiles {q1:.2f}-{q3:.2f}); target <= 1.5x")
    q1, med, q3 = _quartiles([statistics.median(v) for v in with_plan.values()])
    print(f"  per-file ratio with the planning read of units() (driver side, once per file): median {med:.2f}x "
          f"(quartiles {q1:.2f}-{q3:.2f})")
    q1, med, q3 = _quartiles([statistics.median(v) for v in per_slice.values()])
    print(f"  per-slice ratio ours (pixel read given the header)/pydicom: median {med:.2f}x "
          f"(quartiles {q1:.2f}-{q3:.2f}); target <= 1.5x")
    print("  slowest relative to pydicom:")
    for m, p in file_medians[:5]:
        print(f"    {m:5.2f}x  {p.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
