"""Gaia DR3 DataLink products as astroquery's ``Gaia.load_data`` writes them (issue 11.8).

The XP_SAMPLED, XP_CONTINUOUS and MCMC_MSC files are the archive's own, for source 5937083312263887616 in
FITS, VOTable, ECSV and CSV: astroquery ships them as zips in its test data (the installed package's
``astroquery/gaia/tests/data``). EPOCH_PHOTOMETRY, RVS and MCMC_GSPPHOT, which it does not ship, are written
here with astropy in the same layout (one file per source, ``<PRODUCT>-Gaia DR3 <source_id>.<ext>``).
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from clipzoo.astro.crossmatch import classify_input
from clipzoo.astro.datalink import (
    datalink_product,
    mcmc_record,
    read_epoch_photometry,
    read_sampled_spectrum,
)
from clipzoo.astro.errors import AstroReadError
from clipzoo.astro.sources.spectra import SpectraSource
from clipzoo.astro.spectra import read_gaia_xp_sampled
from clipzoo.core.ingest import run_ingest

SOURCE_ID = 5937083312263887616
FORMATS = {"fits": "fits", "vot": "xml", "ecsv": "ecsv", "csv": "csv"}  # zip name -> file suffix


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> Path:
    """The four zips of astroquery's test data, extracted: one folder per format."""
    import astroquery.gaia

    data = Path(astroquery.gaia.__file__).parent / "tests" / "data"
    out = tmp_path_factory.mktemp("datalink")
    for fmt in FORMATS:
        with zipfile.ZipFile(data / f"gaia_dr3_source_id_{SOURCE_ID}_dl_products_{fmt}.zip") as zf:
            for member in zf.namelist():
                assert "/" not in member and ".." not in member  # plain file names, nothing escapes
                (out / fmt).mkdir(exist_ok=True)
                (out / fmt / member).write_bytes(zf.read(member))
    return out


def _xp(products: Path, fmt: str) -> Path:
    return products / fmt / f"XP_SAMPLED-Gaia DR3 {SOURCE_ID}.{FORMATS[fmt]}"


def test_file_names_give_product_and_source_id():
    assert datalink_product(f"XP_SAMPLED-Gaia DR3 {SOURCE_ID}.fits") == ("XP_SAMPLED", SOURCE_ID)
    assert datalink_product("EPOCH_PHOTOMETRY-Gaia DR3 42.xml") == ("EPOCH_PHOTOMETRY", 42)
    assert datalink_product("MCMC_GSPPHOT-Gaia DR3 7.ecsv") == ("MCMC_GSPPHOT", 7)
    assert datalink_product("XP_SAMPLED.ecsv") is None and datalink_product("coadd-5-169.fits") is None


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_xp_sampled_in_every_format(products, fmt):
    path = _xp(products, fmt)
    assert classify_input(path) == "gaia_xp"
    [spec] = read_gaia_xp_sampled(path)  # the call that failed with "lacks column(s) source_id"
    assert spec.meta["gaia_source_id"] == SOURCE_ID and spec.meta["survey_name"] == "gaia_xp"
    assert len(spec.wave) == 343 and spec.wave[0] == 3360.0 and spec.wave[-1] == 10200.0  # 336-1020 nm, in Å
    assert np.all(np.diff(spec.wave) == 20.0) and spec.n_valid == 343
    # the same numbers in every format: FITS/VOTable/ECSV hold float32, the CSV their decimal text
    ref = Table.read(_xp(products, "fits"))
    assert np.allclose(spec.flux, np.asarray(ref["flux"], np.float64), rtol=1e-6, atol=0)
    assert np.allclose(spec.ivar, 1 / np.asarray(ref["flux_error"], np.float64) ** 2, rtol=1e-5)
    assert spec.flux[0] == pytest.approx(4.3137092e-17, rel=1e-6)  # first row of the archive's CSV


def test_ingest_a_load_data_folder(products, tmp_path):
    """The FITS folder as astroquery writes it: the XP spectrum becomes a sample, the others say why not."""
    parser = argparse.ArgumentParser()
    SpectraSource.add_arguments(parser)
    options = parser.parse_args([])
    summary = run_ingest(SpectraSource(options), [products / "fits"], tmp_path / "out", progress=False)
    assert summary["samples_written"] == 1 and summary["inputs_seen"] == 3
    reasons = {Path(s["path"]).name.split("-")[0]: s["reason"] for s in summary["skipped"]}
    assert reasons["XP_CONTINUOUS"].endswith("XP_CONTINUOUS holds Hermite-basis coefficients, not a sampled spectrum; "
                                             "sample it first (GaiaXPy: gaiaxpy.calibrate) or fetch retrieval_type='XP_SAMPLED'")
    assert "not a Gaia DataLink XP_SAMPLED/RVS file name" in reasons["MCMC_MSC"]
    assert summary["counters"]["spectrum_survey"] == {"gaia_xp": 1}


def test_xp_continuous_is_parsed_then_refused_in_every_format(products):
    for fmt, ext in FORMATS.items():
        with pytest.raises(AstroReadError, match="XP_CONTINUOUS holds Hermite-basis coefficients"):
            read_gaia_xp_sampled(products / fmt / f"XP_CONTINUOUS-Gaia DR3 {SOURCE_ID}.{ext}")
    broken = products / "fits" / "XP_CONTINUOUS-Gaia DR3 1.fits"
    broken.write_bytes(b"SIMPLE  =                    T" + b" " * 100)
    with pytest.raises(AstroReadError, match="not a readable Gaia DataLink table"):
        read_gaia_xp_sampled(broken)
    broken.unlink()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mcmc_msc_posterior_medians(products, fmt):
    path = products / fmt / f"MCMC_MSC-Gaia DR3 {SOURCE_ID}.{FORMATS[fmt]}"
    assert classify_input(path) == "catalog"
    rec = mcmc_record(path)
    table = Table.read(_xp(products, "fits").with_name(f"MCMC_MSC-Gaia DR3 {SOURCE_ID}.fits"))
    assert rec["ids"] == {"gaia_source_id": SOURCE_ID} and rec["meta"]["posterior_samples"] == 100 == len(table)
    assert rec["features"]["teff"] == pytest.approx(float(np.median(np.asarray(table["teff1"], np.float64))), rel=1e-6)
    assert set(rec["meta"]["posterior_median"]) == {"teff1", "teff2", "logg1", "logg2", "azero", "mh", "distancepc"}


def _write(table: Table, path: Path) -> Path:
    fmt = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".xml": "votable", ".fits": "fits"}[path.suffix]
    table.write(path, format=fmt)
    return path


@pytest.mark.parametrize("ext", [".fits", ".xml", ".ecsv", ".csv"])
def test_epoch_photometry_g_band_light_curve(tmp_path, ext):
    rng = np.random.default_rng(0)
    n = 30
    bands = np.array(["G", "BP", "RP"] * n)
    time = np.repeat(np.sort(rng.uniform(1700.0, 2700.0, n)), 3)  # BJD(TCB) - 2455197.5
    flux = rng.normal(5000.0, 50.0, 3 * n)
    flux[3] = np.nan  # a G transit without flux
    rejected = np.zeros(3 * n, dtype=bool)
    rejected[6] = True  # a G transit the variability processing rejected
    table = Table({"source_id": np.full(3 * n, 42, np.int64), "transit_id": np.arange(3 * n, dtype=np.int64) + 10**15,
                   "band": bands, "time": time, "mag": 25.7 - 2.5 * np.log10(np.abs(flux)), "flux": flux,
                   "flux_error": np.full(3 * n, 10.0), "flux_over_error": flux / 10.0,
                   "rejected_by_photometry": np.zeros(3 * n, dtype=bool), "rejected_by_variability": rejected,
                   "other_flags": np.zeros(3 * n, np.int64), "solution_id": np.full(3 * n, 375316653866487564, np.int64)})
    table["time"].unit, table["flux"].unit, table["flux_error"].unit = "d", "electron/s", "electron/s"
    path = _write(table, tmp_path / f"EPOCH_PHOTOMETRY-Gaia DR3 42{ext}")
    assert classify_input(path) == "lightcurve"
    lc = read_epoch_photometry(path)
    assert len(lc) == n and lc.meta["gaia_source_id"] == 42 and lc.meta["band"] == "G"
    assert lc.n_valid == n - 2 and not lc.valid[1] and not lc.valid[2]  # the NaN and the rejected transit
    assert np.all(np.diff(lc.time) >= 0) and lc.time[0] == pytest.approx(time[0])
    assert lc.flux[0] == pytest.approx(flux[0])
    assert len(read_epoch_photometry(path, band="RP")) == n
    # a file whose rows belong to another source than its name says
    other = _write(table, tmp_path / f"EPOCH_PHOTOMETRY-Gaia DR3 43{ext}")
    with pytest.raises(AstroReadError, match="the file name says source_id 43 but its rows hold 42"):
        read_epoch_photometry(other)


def test_rvs_and_gspphot_written_in_the_datalink_layout(tmp_path):
    wave = np.round(np.arange(846.0, 870.0 + 1e-9, 0.01), 2)  # 2401 samples
    flux = 1.0 - 0.3 * np.exp(-0.5 * ((wave - 849.8) / 0.1) ** 2)  # normalised, one Ca II line
    err = np.full(wave.size, 0.02)
    err[:5] = np.nan  # unmeasured edge
    rvs = Table({"wavelength": wave, "flux": flux.astype(np.float32), "flux_error": err.astype(np.float32)})
    rvs["wavelength"].unit = "nm"
    for ext in (".fits", ".xml"):
        path = _write(rvs, tmp_path / f"RVS-Gaia DR3 77{ext}")
        assert classify_input(path) == "gaia_xp"
        [spec] = read_gaia_xp_sampled(path)
        assert spec.meta["survey_name"] == "gaia_rvs" and spec.meta["gaia_source_id"] == 77
        assert len(spec.wave) == 2401 and spec.n_valid == 2396 and spec.wave[0] == pytest.approx(8460.0)
        assert spec.flux[np.argmin(np.abs(spec.wave - 8498.0))] == pytest.approx(0.7, abs=1e-3)
    samples = Table({"source_id": np.full(50, 77, np.int64), "solution_id": np.full(50, 1, np.int64),
                     "teff": np.linspace(5700.0, 5900.0, 50), "azero": np.full(50, 0.1), "logg": np.full(50, 4.4),
                     "mh": np.full(50, -0.1), "distancepc": np.linspace(99.0, 101.0, 50),
                     "log_pos": np.zeros(50), "log_lik": np.zeros(50)})
    path = _write(samples, tmp_path / "MCMC_GSPPHOT-Gaia DR3 77.ecsv")
    rec = mcmc_record(path)
    assert rec["features"]["teff"] == pytest.approx(5800.0) and rec["meta"]["posterior_median"]["distancepc"] == pytest.approx(100.0)
    with pytest.raises(AstroReadError, match="not a Gaia DataLink XP_SAMPLED/RVS file name"):
        read_sampled_spectrum(path)
