"""Spectra: DESI coadds (B/R/Z arms merged), Gaia XP sampled spectra, resampling onto a common grid.

Readers return :class:`Spectrum` objects (wavelength in Å, flux, inverse variance, ``valid`` mask and
safe metadata). :func:`spectrum_array` resamples onto a :class:`SpectralGrid` and normalises, giving the
model input ``[L, 2]`` = (normalised flux, normalised error) with a mask ``[L]``.

DESI coadd layouts: *tile-based* coadds (``coadd-PETAL-TILE-thruNIGHT.fits``; primary header TILEID,
PETAL; FIBERMAP has FIBER, LOCATION, PETAL_LOC, TILEID) and *healpix* coadds
(``coadd-SURVEY-PROGRAM-PIXEL.fits``; primary header HPXPIXEL, HPXNSIDE, SURVEY, PROGRAM; FIBERMAP
without fibre columns). Both carry TARGETID, TARGET_RA, TARGET_DEC, COADD_FIBERSTATUS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipzoo.astro.errors import AstroReadError
from clipzoo.astro.lightcurves import _open_fits, robust_standardise

DESI_LICENSE = "CC-BY-4.0 (DESI public data; acknowledge DESI)"
GAIA_LICENSE = "CC-BY-SA-3.0-IGO (ESA/Gaia/DPAC)"
# Gaia DR3 XP sampled spectra: 343 samples, 336-1020 nm in 2 nm steps (Gaia DR3 documentation, ch. 5.3.3).
GAIA_XP_WAVELENGTH_NM = np.arange(336.0, 1020.0 + 1e-9, 2.0)


@dataclass
class Spectrum:
    wave: np.ndarray  # float64, Å, increasing
    flux: np.ndarray  # float64
    ivar: np.ndarray  # float64, 0 where unknown
    valid: np.ndarray  # bool
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())


@dataclass(frozen=True)
class SpectralGrid:
    """A linear wavelength grid in Å (stored in the model's ``preprocess``)."""

    start: float = 3600.0
    stop: float = 9800.0
    size: int = 512

    @property
    def wave(self) -> np.ndarray:
        return np.linspace(self.start, self.stop, self.size)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "size": self.size, "unit": "Angstrom", "spacing": "linear"}


# ------------------------------------------------------------------------------------------------
# DESI
# ------------------------------------------------------------------------------------------------
@dataclass
class DesiCoadd:
    """The arms of a DESI coadd file as read, before merging."""

    path: Path
    layout: str  # "tile" | "healpix"
    header: dict[str, Any]
    arms: dict[str, dict[str, np.ndarray]]  # arm -> {"wave": [M], "flux": [N, M], "ivar": [N, M], "mask": [N, M]}
    fibermap: Any  # astropy Table


def _plain(value):
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        return value.strip()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def read_desi_coadd(path: str | Path) -> DesiCoadd:
    """Read a DESI ``coadd-*.fits`` file: the camera arms present (B/R/Z, or BRZ already merged) and FIBERMAP."""
    from astropy.table import Table

    path = Path(path)
    with _open_fits(path) as hdul:
        names = {h.name for h in hdul}
        if "FIBERMAP" not in names:
            raise AstroReadError("no FIBERMAP extension (not a DESI coadd?); "
                                 f"HDUs present: {', '.join(h.name for h in hdul)}")
        arms: dict[str, dict[str, np.ndarray]] = {}
        for arm in ("B", "R", "Z", "BRZ"):
            needed = [f"{arm}_{part}" for part in ("WAVELENGTH", "FLUX", "IVAR")]
            if not all(n in names for n in needed):
                continue
            wave = np.asarray(hdul[f"{arm}_WAVELENGTH"].data, np.float64)
            flux = np.atleast_2d(np.asarray(hdul[f"{arm}_FLUX"].data, np.float64))
            ivar = np.atleast_2d(np.asarray(hdul[f"{arm}_IVAR"].data, np.float64))
            mask = (np.atleast_2d(np.asarray(hdul[f"{arm}_MASK"].data)) if f"{arm}_MASK" in names
                    else np.zeros(flux.shape, np.uint32))
            if flux.shape[1] != wave.size or ivar.shape != flux.shape or mask.shape != flux.shape:
                raise AstroReadError(f"{arm} arm shapes disagree: wavelength {wave.shape}, flux {flux.shape}, "
                                     f"ivar {ivar.shape}, mask {mask.shape}")
            arms[arm] = {"wave": wave, "flux": flux, "ivar": ivar, "mask": mask}
        if not arms:
            raise AstroReadError("no camera arm found: expected B_/R_/Z_ (or BRZ_) WAVELENGTH, FLUX and IVAR "
                                 "extensions")
        fibermap = Table(hdul["FIBERMAP"].data)
        header = {k: _plain(v) for k, v in hdul[0].header.items() if k and k not in ("COMMENT", "HISTORY", "")}
    for col in ("TARGETID", "TARGET_RA", "TARGET_DEC"):
        if col not in fibermap.colnames:
            raise AstroReadError(f"FIBERMAP lacks column {col}")
    n_rows = {a["flux"].shape[0] for a in arms.values()}
    if n_rows != {len(fibermap)}:
        raise AstroReadError(f"FIBERMAP has {len(fibermap)} rows but the arms hold {sorted(n_rows)} spectra")
    if header.get("SPGRP") == "healpix" or "HPXPIXEL" in header:
        layout = "healpix"
    elif "TILEID" in header or "FIBER" in fibermap.colnames:
        layout = "tile"
    else:
        raise AstroReadError("cannot tell a tile-based from a healpix coadd: "
                             "no TILEID/FIBER nor HPXPIXEL/SPGRP=healpix")
    return DesiCoadd(path, layout, header, arms, fibermap)


def merge_arms(coadd: DesiCoadd) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge the arms onto one wavelength grid -> (wave [M], flux [N, M], ivar [N, M], valid [N, M]).

    The grid runs from the bluest to the reddest arm at the arms' common pixel step (DESI: 0.8 Å). Where
    arms overlap, flux is the inverse-variance weighted mean of the valid pixels (MASK == 0, IVAR > 0)
    and ivar their sum. Arms off the grid are interpolated onto it.
    """
    if "BRZ" in coadd.arms:
        arm = coadd.arms["BRZ"]
        valid = (arm["ivar"] > 0) & (arm["mask"] == 0) & np.isfinite(arm["flux"])
        return arm["wave"], np.where(valid, arm["flux"], 0.0), np.where(valid, arm["ivar"], 0.0), valid
    arms = [coadd.arms[a] for a in ("B", "R", "Z") if a in coadd.arms]
    step = float(np.median(np.diff(arms[0]["wave"])))
    lo = min(float(a["wave"][0]) for a in arms)
    hi = max(float(a["wave"][-1]) for a in arms)
    size = int(round((hi - lo) / step)) + 1
    wave = lo + step * np.arange(size)
    n = arms[0]["flux"].shape[0]
    sum_w = np.zeros((n, size))
    sum_wf = np.zeros((n, size))
    for arm in arms:
        valid = (arm["ivar"] > 0) & (arm["mask"] == 0) & np.isfinite(arm["flux"])
        w = np.where(valid, arm["ivar"], 0.0)
        f = np.where(valid, arm["flux"], 0.0)
        idx = (arm["wave"] - lo) / step
        if np.allclose(idx, np.round(idx), atol=1e-3):
            cols = np.round(idx).astype(int)
            sum_w[:, cols] += w
            sum_wf[:, cols] += w * f
        else:  # not on the common grid: interpolate flux and ivar inside the arm's range
            inside = (wave >= arm["wave"][0]) & (wave <= arm["wave"][-1])
            for i in range(n):
                wi = np.interp(wave[inside], arm["wave"], w[i])
                fi = np.interp(wave[inside], arm["wave"], f[i])
                sum_w[i, inside] += wi
                sum_wf[i, inside] += wi * fi
    valid = sum_w > 0
    flux = np.divide(sum_wf, sum_w, out=np.zeros_like(sum_wf), where=valid)
    return wave, flux, sum_w, valid


def _fibermap_meta(row, layout: str, header: dict[str, Any]) -> dict[str, Any]:
    cols = row.colnames
    meta: dict[str, Any] = {"targetid": int(row["TARGETID"]), "ra": _plain(row["TARGET_RA"]),
                            "dec": _plain(row["TARGET_DEC"]), "desi_layout": layout}
    for col, key in (("OBJTYPE", "objtype"), ("COADD_FIBERSTATUS", "coadd_fiberstatus"), ("MORPHTYPE", "morphtype")):
        if col in cols:
            meta[key] = _plain(row[col])
    if "REF_CAT" in cols and str(_plain(row["REF_CAT"])).startswith("G") and int(row["REF_ID"]) > 0:
        meta["gaia_source_id"] = int(row["REF_ID"])  # Gaia DR2/EDR3 source_id of a Gaia-selected target
    if layout == "tile":
        meta["tileid"] = _plain(row["TILEID"]) if "TILEID" in cols else header.get("TILEID")
        meta["petal"] = _plain(row["PETAL_LOC"]) if "PETAL_LOC" in cols else header.get("PETAL")
        for col in ("FIBER", "LOCATION"):
            if col in cols:
                meta[col.lower()] = _plain(row[col])
    else:
        meta["healpix"] = header.get("HPXPIXEL", header.get("SPGRPVAL"))
        meta["nside"] = header.get("HPXNSIDE")
        meta["survey"] = header.get("SURVEY")
        meta["program"] = header.get("PROGRAM")
    return meta


def read_desi_spectra(path: str | Path) -> list[Spectrum]:
    """One merged-arm :class:`Spectrum` per FIBERMAP row (empty ones included: check ``n_valid``)."""
    coadd = read_desi_coadd(path)
    wave, flux, ivar, valid = merge_arms(coadd)
    out = []
    for i, row in enumerate(coadd.fibermap):
        meta = _fibermap_meta(row, coadd.layout, coadd.header)
        meta.update(source=str(coadd.path), survey_name="desi", license=DESI_LICENSE,
                    flux_unit="1e-17 erg/s/cm2/Angstrom")
        out.append(Spectrum(wave, flux[i], ivar[i], valid[i], meta))
    return out


# ------------------------------------------------------------------------------------------------
# Gaia XP sampled spectra
# ------------------------------------------------------------------------------------------------
def _parse_array_cell(value) -> np.ndarray:
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        return np.array([float(v) if v.strip() not in ("", "nan", "--") else np.nan
                         for v in text.replace(";", ",").split(",")], np.float64)
    arr = np.ma.filled(np.ma.asarray(value, dtype=np.float64), np.nan)
    return np.asarray(arr, np.float64).ravel()


def read_gaia_xp_sampled(path: str | Path) -> list[Spectrum]:
    """Gaia DR3 XP sampled spectra (Datalink ``XP_SAMPLED`` or GaiaXPy ``calibrate`` output) from ECSV,
    VOTable, FITS or CSV (array cells written as ``"[f1, f2, ...]"``).

    A file named as DataLink names it (``XP_SAMPLED-Gaia DR3 <source_id>.fits``, also ``RVS-...``) is one
    source in long layout and is read by :func:`clipzoo.astro.datalink.read_sampled_spectrum`.

    Needs columns ``source_id``, ``flux``, ``flux_error``; the sampling comes from a ``wavelength`` column,
    the table's ``sampling`` metadata (nm), or the DR3 default 336-1020 nm in 2 nm steps.
    """
    from astropy.table import Table

    from clipzoo.astro.datalink import datalink_product, read_sampled_spectrum

    path = Path(path)
    if datalink_product(path) is not None:  # one DataLink file per source: id in the name, one row per sample
        return [read_sampled_spectrum(path)]
    try:
        if path.suffix.lower() == ".csv":
            table = Table.read(path, format="ascii.csv")
        else:
            table = Table.read(path)
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise AstroReadError(f"not a readable Gaia XP table ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in ("source_id", "flux", "flux_error") if c not in table.colnames]
    if missing:
        raise AstroReadError(f"Gaia XP table lacks column(s) {', '.join(missing)}; it has {', '.join(table.colnames)}")
    sampling = table.meta.get("sampling")
    out = []
    for row in table:
        flux = _parse_array_cell(row["flux"])
        err = _parse_array_cell(row["flux_error"])
        if "wavelength" in table.colnames:
            wave_nm = _parse_array_cell(row["wavelength"])
        elif sampling is not None:
            wave_nm = np.asarray(sampling, np.float64)
        else:
            wave_nm = GAIA_XP_WAVELENGTH_NM
        if not (flux.size == err.size == wave_nm.size):
            raise AstroReadError(f"source_id {row['source_id']}: flux ({flux.size}), flux_error ({err.size}) and "
                                 f"sampling ({wave_nm.size}) lengths differ")
        valid = np.isfinite(flux) & np.isfinite(err) & (err > 0)
        ivar = np.where(valid, 1.0 / np.where(valid, err, 1.0) ** 2, 0.0)
        meta = {"gaia_source_id": int(row["source_id"]), "source": str(path), "survey_name": "gaia_xp",
                "license": GAIA_LICENSE, "flux_unit": "W m-2 nm-1"}
        out.append(Spectrum(wave_nm * 10.0, np.where(valid, flux, 0.0), ivar, valid, meta))
    return out


# ------------------------------------------------------------------------------------------------
# common grid
# ------------------------------------------------------------------------------------------------
def resample_spectrum(spec: Spectrum, grid: SpectralGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample onto ``grid`` -> (flux, ivar, valid). Coarser output: inverse-variance weighted mean of the
    valid input pixels in each output bin. Finer output: linear interpolation between valid input pixels
    (not across gaps wider than two input pixels). Outside the input's valid range: masked."""
    out_wave = grid.wave
    w_in = spec.wave[spec.valid]
    f_in = spec.flux[spec.valid]
    iv_in = spec.ivar[spec.valid]
    flux = np.zeros(grid.size)
    ivar = np.zeros(grid.size)
    if w_in.size == 0:
        return flux, ivar, np.zeros(grid.size, bool)
    in_step = float(np.median(np.diff(spec.wave)))
    out_step = (grid.stop - grid.start) / (grid.size - 1)
    if in_step < out_step:
        edges = np.concatenate([[out_wave[0] - out_step / 2], out_wave + out_step / 2])
        idx = np.searchsorted(edges, w_in, side="right") - 1
        inside = (idx >= 0) & (idx < grid.size)
        sw = np.bincount(idx[inside], weights=iv_in[inside], minlength=grid.size)
        swf = np.bincount(idx[inside], weights=iv_in[inside] * f_in[inside], minlength=grid.size)
        valid = sw > 0
        flux[valid] = swf[valid] / sw[valid]
        ivar = sw
    else:
        pos = np.searchsorted(w_in, out_wave)
        left = np.clip(pos - 1, 0, w_in.size - 1)
        right = np.clip(pos, 0, w_in.size - 1)
        gap = w_in[right] - w_in[left]
        valid = (out_wave >= w_in[0]) & (out_wave <= w_in[-1]) & (gap <= 2.0 * in_step + 1e-9)
        flux[valid] = np.interp(out_wave[valid], w_in, f_in)
        var = np.interp(out_wave[valid], w_in, 1.0 / iv_in)
        ivar[valid] = 1.0 / var
    return np.where(valid, flux, 0.0), np.where(valid, ivar, 0.0), valid


def spectrum_array(spec: Spectrum, grid: SpectralGrid = SpectralGrid()
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Model input: resampled onto ``grid`` and robustly standardised -> (``[L, 2]`` float32, mask, info)."""
    flux, ivar, valid = resample_spectrum(spec, grid)
    if not valid.any():
        raise AstroReadError(f"spectrum has no valid pixel on the grid {grid.start:g}-{grid.stop:g} Å")
    normed, center, scale = robust_standardise(flux[valid])
    out = np.zeros((grid.size, 2), np.float32)
    out[valid, 0] = normed
    out[valid, 1] = 1.0 / np.sqrt(ivar[valid]) / scale
    return out, valid, {"flux_center": center, "flux_scale": scale, "grid": grid.to_dict(),
                        "n_valid_pixels": int(valid.sum())}


# ------------------------------------------------------------------------------------------------
# reading many files into per-target records (the ingest sources' reader)
# ------------------------------------------------------------------------------------------------
def read_spectrum_records(paths: list[Path], report) -> list:
    """DESI coadds and Gaia XP sampled spectra -> one cross-match :class:`~clipzoo.astro.crossmatch.Record`
    per target; unreadable files and targets without a valid pixel are skipped on ``report``."""
    from tqdm import tqdm

    from clipzoo.astro.crossmatch import Record, classify_input

    records = []
    for path in tqdm(paths, desc="read spectra", unit="file", leave=False, disable=len(paths) < 20):
        report.input_seen(path)
        try:
            spectra = read_desi_spectra(path) if classify_input(path) == "desi" else read_gaia_xp_sampled(path)
        except AstroReadError as exc:
            report.skip(path, str(exc))
            continue
        for spec in spectra:
            m = spec.meta
            name = f"TARGETID {m['targetid']}" if "targetid" in m else f"Gaia source_id {m['gaia_source_id']}"
            if spec.n_valid == 0:
                status = f" (COADD_FIBERSTATUS={m['coadd_fiberstatus']})" if "coadd_fiberstatus" in m else ""
                report.skip(f"{path}#{name}", f"no valid pixel: every IVAR is 0 or MASK set{status}", kind="target")
                continue
            report.count("spectrum_survey", m["survey_name"] + (f"/{m['desi_layout']}" if "desi_layout" in m else ""))
            ids = {k: m[k] for k in ("targetid", "gaia_source_id") if m.get(k) is not None}
            records.append(Record("spectrum", m["survey_name"], ids, m.get("ra"), m.get("dec"), spec, dict(m)))
    return records
