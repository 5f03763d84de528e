"""Light curves: Kepler/K2/TESS readers, TPF/FFI aperture photometry, stitching and AstroM³ preprocessing.

Readers return a :class:`LightCurve` (time in days, flux, flux error, a ``valid`` mask and safe header
metadata); nothing is dropped, so cadence counts stay those of the file. ``valid`` is False where the
time, flux or error is not finite or where a quality flag in the chosen bitmask is set.

Preprocessing follows AstroM³ (Rizhko & Bloom 2024): robust normalisation, optional phase folding by a
catalogue period or a Lomb-Scargle period (:mod:`astropy.timeseries`), then resampling or padding to a
fixed length ``L`` with a mask. The model input is ``[L, 3]`` = (time since first valid cadence in days,
or phase in [0, 1); normalised flux; normalised error).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipzoo.astro.errors import AstroReadError

log = logging.getLogger(__name__)

# Quality bitmasks, equal to lightkurve's KeplerQualityFlags / TessQualityFlags so results can be compared.
# Kepler "default": attitude tweak, safe mode, coarse point, earth point, desaturation, manual exclude,
# detector anomaly, no data, thruster firing (Kepler Archive Manual, table 2-3).
QUALITY_BITMASKS: dict[str, dict[str, int]] = {
    "kepler": {"none": 0, "default": 1130799, "hard": 1664431, "hardest": 2096639},
    "tess": {"none": 0, "default": 17087, "hard": 24319, "hardest": 65535},
}

# Licenses of the archives these files come from (recorded per sample).
MISSION_LICENSES = {"kepler": "public-domain (NASA/MAST)", "k2": "public-domain (NASA/MAST)",
                    "tess": "public-domain (NASA/MAST)"}


@dataclass
class LightCurve:
    """One light curve. Arrays have one entry per cadence of the file(s); ``valid`` marks usable ones."""

    time: np.ndarray  # float64 days (BKJD for Kepler/K2, BTJD for TESS)
    flux: np.ndarray  # float64
    flux_err: np.ndarray  # float64
    valid: np.ndarray  # bool
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time)

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    def target_id(self) -> str:
        """``kic:11442793`` / ``epic:...`` / ``tic:...``: the key under which segments are stitched."""
        for key in ("kic", "epic", "tic"):
            if self.meta.get(key) is not None:
                return f"{key}:{self.meta[key]}"
        return f"file:{Path(self.meta.get('source', 'unknown')).stem}"


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def _open_fits(path: str | Path):
    """Open a FITS file fully in memory; a truncated or non-FITS file becomes an AstroReadError."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AstropyUserWarning)
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
            for hdu in hdul:  # force every data unit to load now, so truncation shows up here
                _ = hdu.data
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise AstroReadError(f"not a readable FITS file ({type(exc).__name__}: {exc})") from exc
    for w in caught:  # a file cut short only warns: "may have been truncated", or a last header cut mid-block
        text = str(w.message)
        if "truncated" in text.lower() or "not multiple of 2880" in text:
            hdul.close()
            raise AstroReadError(f"not a readable FITS file (truncated: {' '.join(text.split())})")
        log.debug("%s: %s", path, text)
    return hdul


def _mission(header) -> str:
    text = str(header.get("MISSION") or header.get("TELESCOP") or "").strip().lower()
    if text.startswith("k2"):
        return "k2"
    if text.startswith("tess"):
        return "tess"
    if text.startswith("kepler"):
        return "kepler"
    raise AstroReadError(f"unknown mission/telescope {text!r} in the primary header (expected Kepler, K2 or TESS)")


def _header_meta(primary, table_header, mission: str, path: Path) -> dict[str, Any]:
    """IDs, segment numbers, position and brightness from the headers, as plain JSON values."""

    def get(key):
        value = primary.get(key, table_header.get(key))
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value.item() if hasattr(value, "item") else value

    meta: dict[str, Any] = {"source": str(path), "mission": mission, "object": get("OBJECT"),
                            "license": MISSION_LICENSES[mission]}
    if mission == "kepler":
        meta.update(kic=get("KEPLERID"), quarter=get("QUARTER"), mag=get("KEPMAG"))
    elif mission == "k2":
        meta.update(epic=get("KEPLERID"), campaign=get("CAMPAIGN"), mag=get("KEPMAG"))
    else:
        meta.update(tic=get("TICID"), sector=get("SECTOR"), camera=get("CAMERA"), ccd=get("CCD"), mag=get("TESSMAG"))
    meta.update(ra=get("RA_OBJ"), dec=get("DEC_OBJ"), teff=get("TEFF"))
    bjdrefi, bjdreff = table_header.get("BJDREFI"), table_header.get("BJDREFF")
    if bjdrefi is not None:
        meta["time_ref_bjd"] = float(bjdrefi) + float(bjdreff or 0.0)
    meta["time_unit"] = "BTJD" if mission == "tess" else "BKJD"
    return meta


def _bitmask(mission: str, quality_bitmask: str | int) -> int:
    if isinstance(quality_bitmask, int):
        return quality_bitmask
    table = QUALITY_BITMASKS["tess" if mission == "tess" else "kepler"]
    try:
        return table[quality_bitmask]
    except KeyError:
        raise ValueError(f"quality_bitmask must be an int or one of {sorted(table)}, not {quality_bitmask!r}") from None


def _require_columns(hdu, names: list[str], path: Path) -> None:
    missing = [n for n in names if n not in hdu.columns.names]
    if missing:
        raise AstroReadError(f"{hdu.name} extension lacks column(s) {', '.join(missing)}; "
                             f"it has {', '.join(hdu.columns.names)}")


def read_lightcurve(path: str | Path, *, flux_column: str = "auto", quality_bitmask: str | int = "default",
                    aperture: str = "pipeline") -> LightCurve:
    """Read a Kepler/K2/TESS light-curve file (``LIGHTCURVE`` HDU) or target-pixel/FFI cutout (``PIXELS``).

    ``flux_column``: ``auto`` (PDCSAP_FLUX when it holds finite values, else SAP_FLUX), ``PDCSAP_FLUX`` or
    ``SAP_FLUX``. ``quality_bitmask``: ``default``/``hard``/``hardest``/``none`` (lightkurve's masks) or an
    int. ``aperture`` is used for pixel files only (see :func:`read_target_pixels`).
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        names = [h.name for h in hdul]
        if "PIXELS" in names:
            return _target_pixels(hdul, path, quality_bitmask=quality_bitmask, aperture=aperture)
        if "LIGHTCURVE" not in names:
            raise AstroReadError(f"no LIGHTCURVE or PIXELS extension; HDUs present: {', '.join(names)}")
        hdu = hdul["LIGHTCURVE"]
        mission = _mission(hdul[0].header)
        meta = _header_meta(hdul[0].header, hdu.header, mission, path)
        _require_columns(hdu, ["TIME"], path)
        cols = hdu.columns.names
        if flux_column == "auto":
            candidates = [c for c in ("PDCSAP_FLUX", "SAP_FLUX") if c in cols]
            if not candidates:
                raise AstroReadError("LIGHTCURVE extension has neither PDCSAP_FLUX nor SAP_FLUX; "
                                     f"it has {', '.join(cols)}")
            flux_column = next((c for c in candidates if np.isfinite(hdu.data[c]).any()), candidates[0])
        quality_column = next((c for c in ("SAP_QUALITY", "QUALITY") if c in cols), None)
        _require_columns(hdu, [flux_column, f"{flux_column}_ERR"], path)
        data = hdu.data
        time = np.asarray(data["TIME"], dtype=np.float64)
        flux = np.asarray(data[flux_column], dtype=np.float64)
        err = np.asarray(data[f"{flux_column}_ERR"], dtype=np.float64)
        quality = np.asarray(data[quality_column], dtype=np.int64) if quality_column else np.zeros(len(time), np.int64)
    if not np.isfinite(flux).any():
        raise AstroReadError(f"{flux_column} holds no finite value (all NaN) in {len(flux)} cadences")
    bitmask = _bitmask(mission, quality_bitmask)
    finite = np.isfinite(time) & np.isfinite(flux) & np.isfinite(err)
    flagged = (quality & bitmask) != 0
    valid = finite & ~flagged
    meta.update(flux_column=flux_column, quality_column=quality_column, quality_bitmask=bitmask,
                n_cadences=len(time), n_valid=int(valid.sum()), n_nonfinite=int((~finite).sum()),
                n_quality_flagged=int(flagged.sum()))
    return LightCurve(time, flux, err, valid, meta)


def read_target_pixels(path: str | Path, *, quality_bitmask: str | int = "default",
                       aperture: str = "pipeline", threshold_sigma: float = 3.0) -> LightCurve:
    """Aperture photometry of a TESS/Kepler target-pixel file or FFI cutout (``PIXELS`` HDU).

    ``aperture``: ``pipeline`` (the mission's optimal aperture, bit 2 of the APERTURE image; falls back
    to ``threshold`` when the file has none, as TESScut FFI cutouts do), ``threshold`` (pixels brighter
    than the median image's median + ``threshold_sigma`` robust sigmas) or ``all``. The aperture used is
    recorded in ``meta["aperture"]`` (row-major 0/1 lists) with its method and pixel count.
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        if "PIXELS" not in [h.name for h in hdul]:
            raise AstroReadError(f"no PIXELS extension; HDUs present: {', '.join(h.name for h in hdul)}")
        return _target_pixels(hdul, path, quality_bitmask=quality_bitmask, aperture=aperture,
                              threshold_sigma=threshold_sigma)


def _target_pixels(hdul, path: Path, *, quality_bitmask, aperture: str, threshold_sigma: float = 3.0) -> LightCurve:
    hdu = hdul["PIXELS"]
    mission = _mission(hdul[0].header)
    meta = _header_meta(hdul[0].header, hdu.header, mission, path)
    _require_columns(hdu, ["TIME", "FLUX", "FLUX_ERR"], path)
    data = hdu.data
    time = np.asarray(data["TIME"], dtype=np.float64)
    cube = np.asarray(data["FLUX"], dtype=np.float64)
    cube_err = np.asarray(data["FLUX_ERR"], dtype=np.float64)
    if cube.ndim != 3:
        raise AstroReadError(f"PIXELS FLUX column has shape {cube.shape}; expected [cadence, row, column]")
    quality_column = next((c for c in ("QUALITY", "SAP_QUALITY") if c in hdu.columns.names), None)
    quality = np.asarray(data[quality_column], np.int64) if quality_column else np.zeros(len(time), np.int64)
    if not np.isfinite(cube).any():
        raise AstroReadError(f"pixel FLUX cube holds no finite value (all NaN) in {len(time)} cadences")

    method = aperture
    mask = None
    if aperture == "pipeline":
        if "APERTURE" in [h.name for h in hdul] and hdul["APERTURE"].data is not None:
            mask = (np.asarray(hdul["APERTURE"].data, dtype=np.int64) & 2) != 0
        if mask is None or not mask.any():
            method = "threshold (no pipeline aperture in file)"
            aperture = "threshold"
    if aperture == "threshold":
        image = np.nanmedian(np.where(np.isfinite(cube), cube, np.nan), axis=0)
        med = np.nanmedian(image)
        sigma = 1.4826 * np.nanmedian(np.abs(image - med))
        mask = np.isfinite(image) & (image > med + threshold_sigma * sigma)
        if not mask.any():  # a flat cutout: take the brightest pixel rather than nothing
            mask = np.zeros(image.shape, bool)
            mask[np.unravel_index(np.nanargmax(image), image.shape)] = True
    elif aperture == "all":
        mask = np.ones(cube.shape[1:], bool)
    elif aperture != "pipeline":
        raise ValueError(f"aperture must be 'pipeline', 'threshold' or 'all', not {aperture!r}")
    if mask.shape != cube.shape[1:]:
        raise AstroReadError(f"APERTURE image shape {mask.shape} differs from the pixel cube's {cube.shape[1:]}")

    pix = cube[:, mask]
    pix_err = cube_err[:, mask]
    flux = pix.sum(axis=1)  # NaN if any aperture pixel is NaN: such a cadence is not valid
    err = np.sqrt((pix_err**2).sum(axis=1))
    bitmask = _bitmask(mission, quality_bitmask)
    finite = np.isfinite(time) & np.isfinite(flux) & np.isfinite(err)
    flagged = (quality & bitmask) != 0
    valid = finite & ~flagged
    meta.update(flux_column="FLUX (aperture sum)", quality_column=quality_column, quality_bitmask=bitmask,
                aperture=mask.astype(int).tolist(), aperture_method=method, aperture_npix=int(mask.sum()),
                n_cadences=len(time), n_valid=int(valid.sum()), n_nonfinite=int((~finite).sum()),
                n_quality_flagged=int(flagged.sum()))
    return LightCurve(time, flux, err, valid, meta)


# ------------------------------------------------------------------------------------------------
# stitching
# ------------------------------------------------------------------------------------------------
def stitch(segments: list[LightCurve]) -> LightCurve:
    """Join quarters/sectors of one star: each segment divided by its own median valid flux, then
    concatenated in time order. Segments of different targets are refused."""
    if not segments:
        raise ValueError("stitch() needs at least one light curve")
    targets = {s.target_id() for s in segments}
    if len(targets) > 1:
        raise ValueError(f"refusing to stitch light curves of different targets: {sorted(targets)}")
    segments = sorted(segments, key=lambda s: np.nanmin(s.time) if np.isfinite(s.time).any() else np.inf)
    times, fluxes, errs, valids, parts = [], [], [], [], []
    for seg in segments:
        if not seg.valid.any():
            raise AstroReadError(f"segment {seg.meta.get('source')} has no valid cadence")
        median = float(np.median(seg.flux[seg.valid]))
        if median == 0:
            raise AstroReadError(f"segment {seg.meta.get('source')} has median flux 0; cannot normalise")
        times.append(seg.time)
        fluxes.append(seg.flux / median)
        errs.append(seg.flux_err / abs(median))
        valids.append(seg.valid)
        parts.append({k: seg.meta.get(k) for k in ("source", "quarter", "campaign", "sector", "n_cadences", "n_valid")}
                     | {"median_flux": median})
    meta = {k: v for k, v in segments[0].meta.items()
            if k not in ("source", "quarter", "campaign", "sector", "n_cadences", "n_valid", "n_nonfinite",
                         "n_quality_flagged")}
    time = np.concatenate(times)
    order = np.argsort(np.where(np.isfinite(time), time, np.inf), kind="stable")
    valid = np.concatenate(valids)[order]
    meta.update(segments=parts, source=[p["source"] for p in parts], n_cadences=len(time), n_valid=int(valid.sum()),
                normalisation="per-segment median")
    return LightCurve(time[order], np.concatenate(fluxes)[order], np.concatenate(errs)[order], valid, meta)


# ------------------------------------------------------------------------------------------------
# AstroM³ preprocessing
# ------------------------------------------------------------------------------------------------
def robust_standardise(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(values - median) / (1.4826 * MAD)``; falls back to the standard deviation, then 1, for flat data."""
    center = float(np.median(values))
    scale = float(1.4826 * np.median(np.abs(values - center)))
    if not np.isfinite(scale) or scale <= 0:
        scale = float(np.std(values))
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return (values - center) / scale, center, scale


def lombscargle_period(time: np.ndarray, flux: np.ndarray, flux_err: np.ndarray | None = None, *,
                       min_period: float = 0.02, max_period: float | None = None,
                       samples_per_peak: int = 5) -> tuple[float, float]:
    """Best Lomb-Scargle period (days) and its power, searched between ``min_period`` (raised to twice the
    median cadence: shorter periods are aliases of the sampling) and ``max_period`` (default: half the span)."""
    from astropy.timeseries import LombScargle

    span = float(np.max(time) - np.min(time))
    if span <= 0 or len(time) < 5:
        raise ValueError("Lomb-Scargle needs at least 5 points spanning a positive time range")
    min_period = max(min_period, 2.0 * float(np.median(np.diff(np.sort(time)))))
    max_period = max_period or span / 2
    ls = LombScargle(time, flux, flux_err)
    freq, power = ls.autopower(minimum_frequency=1.0 / max_period, maximum_frequency=1.0 / min_period,
                               samples_per_peak=samples_per_peak)
    best = int(np.argmax(power))
    return float(1.0 / freq[best]), float(power[best])


@dataclass(frozen=True)
class LightCurvePreprocess:
    """AstroM³ light-curve preprocessing settings (stored in the model's ``preprocess``)."""

    length: int = 256
    fold: str = "none"  # "none" | "catalog" | "lombscargle" | "auto" (catalogue period if known, else LS)
    min_period: float = 0.02
    max_period: float | None = None

    def __post_init__(self):
        if self.fold not in ("none", "catalog", "lombscargle", "auto"):
            raise ValueError(f"fold must be none, catalog, lombscargle or auto, not {self.fold!r}")
        if self.length < 2:
            raise ValueError("length must be at least 2")


def _bin(x: np.ndarray, y: np.ndarray, e: np.ndarray, lo: float, hi: float, length: int):
    """Inverse-variance weighted mean of y in ``length`` equal bins over [lo, hi); empty bins masked."""
    edges = np.linspace(lo, hi, length + 1)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, length - 1)
    w = 1.0 / np.maximum(e, 1e-12) ** 2
    sw = np.bincount(idx, weights=w, minlength=length)
    swy = np.bincount(idx, weights=w * y, minlength=length)
    mask = sw > 0
    out = np.zeros((length, 3), np.float64)
    out[:, 0] = 0.5 * (edges[:-1] + edges[1:])
    out[mask, 1] = swy[mask] / sw[mask]
    out[mask, 2] = 1.0 / np.sqrt(sw[mask])
    out[~mask, 0] = 0.0
    return out, mask


def preprocess_lightcurve(lc: LightCurve, cfg: LightCurvePreprocess = LightCurvePreprocess(), *,
                          period: float | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """AstroM³ preprocessing of one light curve -> (array ``[L, 3]`` float32, mask ``[L]`` bool, info).

    Valid cadences are robustly standardised (median / 1.4826 MAD; errors scaled alike). With folding
    (``cfg.fold``; ``period`` is the catalogue period), x is the phase in [0, 1) from the first valid
    cadence; without, x is days since it. Up to ``L`` points are kept as they are (sorted by x) and
    padded; more are binned onto ``L`` equal bins (inverse-variance weighted), empty bins masked.
    """
    if not lc.valid.any():
        raise AstroReadError("light curve has no valid cadence")
    t = lc.time[lc.valid]
    y, center, scale = robust_standardise(lc.flux[lc.valid])
    e = lc.flux_err[lc.valid] / scale
    info: dict[str, Any] = {"flux_center": center, "flux_scale": scale, "n_points": int(len(t)), "length": cfg.length}

    fold_period, period_source = None, None
    if cfg.fold in ("catalog", "auto") and period is not None and np.isfinite(period) and period > 0:
        fold_period, period_source = float(period), "catalog"
    elif cfg.fold == "catalog":
        raise ValueError("fold='catalog' needs a positive catalogue period for this star")
    elif cfg.fold in ("lombscargle", "auto"):
        fold_period, power = lombscargle_period(t, y, e, min_period=cfg.min_period, max_period=cfg.max_period)
        period_source = "lombscargle"
        info["ls_power"] = power
    t0 = float(t.min())
    if fold_period is not None:
        x = np.mod((t - t0) / fold_period, 1.0)
        lo, hi = 0.0, 1.0
        info.update(period=fold_period, period_source=period_source, x="phase")
    else:
        x = t - t0
        lo, hi = 0.0, float(x.max()) + 1e-9
        info.update(x="days since first valid cadence")
    info["t0"] = t0

    length = cfg.length
    if len(x) <= length:
        order = np.argsort(x, kind="stable")
        out = np.zeros((length, 3), np.float64)
        out[: len(x)] = np.stack([x[order], y[order], e[order]], axis=1)
        mask = np.zeros(length, bool)
        mask[: len(x)] = True
        info["resample"] = "pad"
    else:
        out, mask = _bin(x, y, e, lo, hi, length)
        info["resample"] = "bin"
    return out.astype(np.float32), mask, info


# ------------------------------------------------------------------------------------------------
# reading many files into per-star records (the ingest sources' reader)
# ------------------------------------------------------------------------------------------------
def read_lightcurve_records(paths: list[Path], report, *, flux_column: str = "auto",
                            quality_bitmask: str | int = "default", aperture: str = "pipeline",
                            stitch_segments: bool = True) -> list:
    """Read light-curve files (and Gaia DataLink epoch photometry), stitched per star unless
    ``stitch_segments`` is False -> cross-match :class:`~clipzoo.astro.crossmatch.Record` s.

    A file that cannot be read or has no valid cadence is skipped on ``report`` (an
    :class:`~clipzoo.core.ingest.IngestReport`) with the reason.
    """
    from tqdm import tqdm

    from clipzoo.astro.crossmatch import Record
    from clipzoo.astro.datalink import datalink_product, read_epoch_photometry

    by_target: dict[str, list[LightCurve]] = {}
    for path in tqdm(paths, desc="read light curves", unit="file", leave=False, disable=len(paths) < 20):
        report.input_seen(path)
        try:
            if datalink_product(path) is not None:  # Gaia DataLink EPOCH_PHOTOMETRY (G-band transits)
                lc = read_epoch_photometry(path)
            else:
                lc = read_lightcurve(path, flux_column=flux_column, quality_bitmask=quality_bitmask, aperture=aperture)
        except AstroReadError as exc:
            report.skip(path, str(exc))
            continue
        if lc.n_valid == 0:
            report.skip(path, f"no valid cadence: {lc.meta['n_nonfinite']} non-finite, "
                              f"{lc.meta['n_quality_flagged']} quality-flagged of {len(lc)}")
            continue
        report.count("mission", lc.meta["mission"])
        key = lc.target_id() if stitch_segments else f"{lc.target_id()}|{path}"
        by_target.setdefault(key, []).append(lc)
    records = []
    for segments in by_target.values():
        lc = stitch(segments) if len(segments) > 1 else segments[0]
        ids = {k: lc.meta[k] for k in ("kic", "epic", "tic", "gaia_source_id") if lc.meta.get(k) is not None}
        report.count("segments_per_star", len(segments))
        records.append(Record("lightcurve", lc.meta["mission"], ids, lc.meta.get("ra"), lc.meta.get("dec"), lc,
                              dict(lc.meta)))
    return records
