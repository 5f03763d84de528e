"""Gaia DR3 DataLink products, as ``astroquery.gaia.Gaia.load_data`` (or the archive's DataLink service) writes them.

``Gaia.load_data(ids, retrieval_type=..., format=...)`` writes one file per source and product, named
``<PRODUCT>-Gaia DR3 <source_id>.<ext>`` (spaces included): FITS (``.fits``), VOTable (``.xml``), ECSV
(``.ecsv``) or CSV (``.csv``). The layouts, as in the archive's own files (astroquery ships some in its tests):

- ``XP_SAMPLED``: one row per wavelength sample (343 rows, 336-1020 nm in 2 nm steps): ``wavelength`` [nm],
  ``flux`` and ``flux_error`` [W m-2 nm-1]. FITS, VOTable and ECSV carry the source id only in the file name
  (and in header metadata); the CSV form repeats ``source_id``, ``solution_id``, ``ra``, ``dec`` on each row.
- ``RVS``: the mean RVS spectrum in the same long layout: ``wavelength`` [nm, 846-870 nm], ``flux``
  (normalised to the continuum) and ``flux_error``.
- ``EPOCH_PHOTOMETRY``: one row per transit and band: ``source_id``, ``transit_id``, ``band`` (G, BP, RP),
  ``time`` [d, BJD(TCB) - 2455197.5], ``mag``, ``flux`` [e-/s], ``flux_error``, ``flux_over_error``,
  ``rejected_by_photometry``, ``rejected_by_variability``, ``other_flags``, ``solution_id``.
- ``MCMC_GSPPHOT`` / ``MCMC_MSC``: posterior samples of the astrophysical parameters (``teff``/``teff1``,
  ``logg``, ``mh``, ``azero``, ``distancepc``..., ``log_pos``, ``log_lik``), one row per sample.
- ``XP_CONTINUOUS``: one row per source of Hermite-basis coefficients (``bp_coefficients``,
  ``rp_coefficients`` and their errors/correlations); it is not a spectrum until sampled on the bases.

Every table is read with astropy (``astropy.table`` / ``astropy.io.votable``); the product and source id
come from the file name. Nothing here contacts the archive.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from clipzoo.astro.errors import AstroReadError

PRODUCTS = ("XP_SAMPLED", "XP_CONTINUOUS", "EPOCH_PHOTOMETRY", "MCMC_GSPPHOT", "MCMC_MSC", "RVS")
SPECTRUM_PRODUCTS = ("XP_SAMPLED", "RVS")
GAIA_LICENSE = "CC-BY-SA-3.0-IGO (ESA/Gaia/DPAC)"
_NAME = re.compile(r"^(?P<product>" + "|".join(PRODUCTS) + r")[-_]Gaia DR3[ _](?P<source_id>\d+)"
                   r"(?:_(?P<band>G|BP|RP))?\.(?P<ext>fits|fits\.gz|fit|xml|vot|votable|ecsv|csv)$", re.IGNORECASE)
_MCMC_FEATURES = {"teff": ("teff", "teff1")}  # feature vector name -> DataLink column(s), first present wins


def datalink_product(path: str | Path) -> tuple[str, int] | None:
    """``(product, source_id)`` from a DataLink file name, or ``None`` for any other name."""
    m = _NAME.match(Path(path).name)
    return (m["product"].upper(), int(m["source_id"])) if m else None


def read_product_table(path: str | Path):
    """The file's table, parsed by astropy according to its suffix (CSV, ECSV, VOTable or FITS)."""
    from astropy.table import Table

    path = Path(path)
    name = path.name.lower()
    fmt = ("ascii.csv" if name.endswith(".csv") else "ascii.ecsv" if name.endswith(".ecsv")
           else "votable" if name.endswith((".xml", ".vot", ".votable")) else "fits")
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unit strings like 'dex' and FITS TUCD keywords warn, harmlessly
            return Table.read(path, format=fmt)
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise AstroReadError(f"not a readable Gaia DataLink table ({type(exc).__name__}: {exc})") from exc


def _require(table, columns: tuple[str, ...], product: str) -> None:
    missing = [c for c in columns if c not in table.colnames]
    if missing:
        raise AstroReadError(f"Gaia DataLink {product} table lacks column(s) {', '.join(missing)}; "
                             f"it has {', '.join(table.colnames)}")


def _check_ids(table, source_id: int, product: str) -> None:
    """The rows' own ``source_id`` (CSV form) must be the one in the file name."""
    if "source_id" in table.colnames:
        ids = sorted({int(v) for v in np.asarray(table["source_id"])})
        if ids != [source_id]:
            raise AstroReadError(f"Gaia DataLink {product}: the file name says source_id {source_id} "
                                 f"but its rows hold {', '.join(map(str, ids[:5]))}")


def read_sampled_spectrum(path: str | Path):
    """An ``XP_SAMPLED`` or ``RVS`` file as one :class:`~clipzoo.astro.spectra.Spectrum` (wavelength in Å)."""
    from clipzoo.astro.spectra import Spectrum

    path = Path(path)
    found = datalink_product(path)
    if found is not None and found[0] == "XP_CONTINUOUS":
        check_continuous(path)
    if found is None or found[0] not in SPECTRUM_PRODUCTS:
        raise AstroReadError(f"not a Gaia DataLink XP_SAMPLED/RVS file name ({path.name}); expected "
                             f"'XP_SAMPLED-Gaia DR3 <source_id>.fits' as written by astroquery Gaia.load_data")
    product, source_id = found
    table = read_product_table(path)
    _require(table, ("wavelength", "flux", "flux_error"), product)
    _check_ids(table, source_id, product)
    wave_nm = np.asarray(table["wavelength"], dtype=np.float64)
    unit = str(table["wavelength"].unit or "nm")
    if unit not in ("nm", "None"):
        raise AstroReadError(f"Gaia DataLink {product}: wavelength unit {unit!r}, expected nm")
    order = np.argsort(wave_nm, kind="stable")
    flux = np.asarray(np.ma.filled(table["flux"], np.nan), dtype=np.float64)[order]
    err = np.asarray(np.ma.filled(table["flux_error"], np.nan), dtype=np.float64)[order]
    valid = np.isfinite(flux) & np.isfinite(err) & (err > 0)
    ivar = np.where(valid, 1.0 / np.where(valid, err, 1.0) ** 2, 0.0)
    meta: dict[str, Any] = {"gaia_source_id": source_id, "source": str(path), "license": GAIA_LICENSE,
                            "survey_name": "gaia_xp" if product == "XP_SAMPLED" else "gaia_rvs",
                            "datalink_product": product,
                            "flux_unit": "W m-2 nm-1" if product == "XP_SAMPLED" else "normalised"}
    for col in ("ra", "dec"):
        if col in table.colnames and len(table):
            meta[col] = float(table[col][0])
    return Spectrum(wave_nm[order] * 10.0, np.where(valid, flux, 0.0), ivar, valid, meta)


def continuous_message(path: str | Path) -> str:
    return (f"{Path(path).name}: XP_CONTINUOUS holds Hermite-basis coefficients, not a sampled spectrum; "
            "sample it first (GaiaXPy: gaiaxpy.calibrate) or fetch retrieval_type='XP_SAMPLED'")


def check_continuous(path: str | Path) -> None:
    """Parse an ``XP_CONTINUOUS`` file (so a broken one says so) and refuse it with what to do instead."""
    table = read_product_table(path)
    _require(table, ("bp_coefficients", "rp_coefficients"), "XP_CONTINUOUS")
    raise AstroReadError(continuous_message(path))


def read_epoch_photometry(path: str | Path, band: str = "G"):
    """An ``EPOCH_PHOTOMETRY`` file's ``band`` transits as a :class:`~clipzoo.astro.lightcurves.LightCurve`.

    Valid: finite flux and error, and not rejected by the photometric or variability processing.
    """
    from clipzoo.astro.lightcurves import LightCurve

    path = Path(path)
    found = datalink_product(path)
    if found is None or found[0] != "EPOCH_PHOTOMETRY":
        raise AstroReadError(f"not a Gaia DataLink EPOCH_PHOTOMETRY file name ({path.name})")
    source_id = found[1]
    table = read_product_table(path)
    _require(table, ("band", "time", "flux", "flux_error"), "EPOCH_PHOTOMETRY")
    _check_ids(table, source_id, "EPOCH_PHOTOMETRY")
    bands = np.char.strip(np.asarray(table["band"]).astype(str))
    rows = np.flatnonzero(bands == band)
    if not len(rows):
        raise AstroReadError(f"Gaia DataLink EPOCH_PHOTOMETRY: no {band} transit (bands: {', '.join(sorted(set(bands)))})")
    time = np.asarray(np.ma.filled(table["time"], np.nan), dtype=np.float64)[rows]
    flux = np.asarray(np.ma.filled(table["flux"], np.nan), dtype=np.float64)[rows]
    err = np.asarray(np.ma.filled(table["flux_error"], np.nan), dtype=np.float64)[rows]
    rejected = np.zeros(len(rows), dtype=bool)
    for col in ("rejected_by_photometry", "rejected_by_variability"):
        if col in table.colnames:
            rejected |= np.asarray(np.ma.filled(table[col], True)).astype(str)[rows] == "True"
    finite = np.isfinite(time) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
    order = np.argsort(np.where(np.isfinite(time), time, np.inf), kind="stable")
    meta = {"mission": "gaia", "gaia_source_id": source_id, "band": band, "source": str(path), "license": GAIA_LICENSE,
            "time_system": "BJD(TCB) - 2455197.5", "flux_unit": "e-/s", "n_nonfinite": int((~finite).sum()),
            "n_quality_flagged": int((finite & rejected).sum()), "datalink_product": "EPOCH_PHOTOMETRY"}
    return LightCurve(time[order], np.where(finite, flux, 0.0)[order], np.where(finite, err, 0.0)[order],
                      (finite & ~rejected)[order], meta)


def mcmc_record(path: str | Path) -> dict[str, Any]:
    """An ``MCMC_GSPPHOT``/``MCMC_MSC`` file as a catalogue record: posterior medians of its parameters.

    The median of each numeric parameter is kept in ``meta["posterior_median"]``; the temperature (``teff``,
    or the primary's ``teff1`` for the binary MSC model) fills the ``teff`` feature.
    """
    path = Path(path)
    found = datalink_product(path)
    if found is None or not found[0].startswith("MCMC_"):
        raise AstroReadError(f"not a Gaia DataLink MCMC_GSPPHOT/MCMC_MSC file name ({path.name})")
    product, source_id = found
    table = read_product_table(path)
    _check_ids(table, source_id, product)
    skip = {"source_id", "solution_id", "log_pos", "log_lik"}
    medians = {}
    for col in table.colnames:
        if col in skip or table[col].dtype.kind not in "fiu":
            continue
        values = np.asarray(np.ma.filled(table[col], np.nan), dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values):
            medians[col] = float(np.median(values))
    if not medians:
        raise AstroReadError(f"Gaia DataLink {product}: no numeric parameter column; it has {', '.join(table.colnames)}")
    features: dict[str, float | None] = {}
    for feature, columns in _MCMC_FEATURES.items():
        features[feature] = next((medians[c] for c in columns if c in medians and math.isfinite(medians[c])), None)
    return {"ids": {"gaia_source_id": source_id}, "ra": None, "dec": None, "features": features,
            "catalog": "gaia_" + product.lower(),
            "meta": {"source": str(path), "license": GAIA_LICENSE, "datalink_product": product,
                     "posterior_samples": len(table), "posterior_median": medians}}
