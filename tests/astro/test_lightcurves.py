"""Light-curve readers, TPF aperture photometry, stitching and AstroM³ preprocessing on the real Kepler files."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
from astropy.io import fits

from clipzoo.astro.errors import AstroReadError
from clipzoo.astro.lightcurves import (
    LightCurve,
    LightCurvePreprocess,
    lombscargle_period,
    preprocess_lightcurve,
    read_lightcurve,
    read_target_pixels,
    stitch,
)
from clipzoo.astro.sources.lightcurves import LightCurvesSource
from clipzoo.core.ingest import run_ingest

Q3 = "kplr011442793-2009350155506_llc.fits"
Q4 = "kplr011442793-2010009091648_llc.fits"


@pytest.fixture(scope="module")
def kepler(shared_data):
    return shared_data / "astro" / "lightcurves" / "kepler"


def _options(cls, **overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cls.add_arguments(parser)
    options = parser.parse_args([])
    vars(options).update(overrides)
    return options


# -- Kepler long cadence -----------------------------------------------------------------------
def test_kepler_cadence_counts_and_masks(kepler):
    q3 = read_lightcurve(kepler / Q3)
    q4 = read_lightcurve(kepler / Q4)
    assert (len(q3), len(q4)) == (4370, 1021)
    # PDCSAP NaN gaps: 236 in Q3 (142 of them with NaN TIME too), 13 in Q4
    assert (q3.meta["n_nonfinite"], q4.meta["n_nonfinite"]) == (236, 13)
    assert int(np.isnan(q3.time).sum()) == 142
    # lightkurve's default bitmask flags 230 / 10 cadences; all of them already have NaN flux
    assert (q3.meta["n_quality_flagged"], q4.meta["n_quality_flagged"]) == (230, 10)
    assert (q3.n_valid, q4.n_valid) == (4134, 1008)  # == len(lightkurve.read(f).remove_nans())
    assert q3.meta["flux_column"] == "PDCSAP_FLUX" and q3.meta["quality_column"] == "SAP_QUALITY"
    assert q3.meta["kic"] == 11442793 and (q3.meta["quarter"], q4.meta["quarter"]) == (3, 4)
    assert q3.meta["ra"] == pytest.approx(284.433491) and q3.meta["dec"] == pytest.approx(49.30516)
    assert np.isfinite(q3.flux[q3.valid]).all() and not q3.valid[np.isnan(q3.time)].any()
    assert q3.time[q3.valid][0] == pytest.approx(260.24460517) and q3.time[q3.valid][-1] == pytest.approx(349.4959232)


def test_quality_bitmask_and_flux_column_choices(kepler):
    hardest = read_lightcurve(kepler / Q3, quality_bitmask="hardest")
    assert hardest.meta["n_quality_flagged"] == 534 and hardest.n_valid == 3835
    assert read_lightcurve(kepler / Q4, quality_bitmask="hardest").n_valid == 955
    sap = read_lightcurve(kepler / Q3, flux_column="SAP_FLUX")
    assert sap.meta["n_nonfinite"] == 233 and sap.n_valid == 4135
    with pytest.raises(ValueError, match="quality_bitmask"):
        read_lightcurve(kepler / Q3, quality_bitmask="strict")


def test_stitch_normalises_each_quarter(kepler):
    lc = stitch([read_lightcurve(kepler / Q4), read_lightcurve(kepler / Q3)])  # order does not matter
    assert len(lc) == 4370 + 1021 and lc.n_valid == 4134 + 1008
    assert [s["quarter"] for s in lc.meta["segments"]] == [3, 4]
    assert lc.meta["segments"][0]["median_flux"] == pytest.approx(39939.177734375)
    assert lc.meta["segments"][1]["median_flux"] == pytest.approx(43252.470703125)
    q3_part = lc.flux[lc.valid][:4134]
    q4_part = lc.flux[lc.valid][4134:]
    assert np.median(q3_part) == pytest.approx(1.0) and np.median(q4_part) == pytest.approx(1.0)
    valid_t = lc.time[lc.valid]
    assert np.all(np.diff(valid_t) > 0)
    other = read_lightcurve(kepler / Q3)
    other.meta["kic"] = 1
    with pytest.raises(ValueError, match="different targets"):
        stitch([read_lightcurve(kepler / Q4), other])


def test_preprocess_bins_pads_and_folds(kepler):
    lc = stitch([read_lightcurve(kepler / Q3), read_lightcurve(kepler / Q4)])
    arr, mask, info = preprocess_lightcurve(lc, LightCurvePreprocess(length=256))
    assert arr.shape == (256, 3) and arr.dtype == np.float32 and mask.dtype == bool
    assert info["resample"] == "bin" and info["n_points"] == 5142
    assert int(mask.sum()) == 245  # 11 bins fall in the Q3/Q4 gap
    assert not arr[~mask].any()
    assert info["flux_center"] == pytest.approx(1.0)
    padded, pmask, pinfo = preprocess_lightcurve(lc, LightCurvePreprocess(length=8192))
    assert pinfo["resample"] == "pad" and int(pmask.sum()) == 5142 and not pmask[5142:].any()
    folded, fmask, finfo = preprocess_lightcurve(lc, LightCurvePreprocess(length=100, fold="catalog"), period=14.5)
    assert finfo["period"] == 14.5 and finfo["period_source"] == "catalog" and finfo["x"] == "phase"
    assert fmask.all() and (folded[:, 0] >= 0).all() and (folded[:, 0] < 1).all()
    with pytest.raises(ValueError, match="catalogue period"):
        preprocess_lightcurve(lc, LightCurvePreprocess(fold="catalog"))


def test_lombscargle_recovers_a_known_period():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 60, 900))
    flux = 1 + 0.01 * np.sin(2 * np.pi * t / 2.7183) + rng.normal(0, 0.002, t.size)
    period, power = lombscargle_period(t, flux, np.full(t.size, 0.002))
    assert period == pytest.approx(2.7183, rel=2e-3) and power > 0.8
    lc = LightCurve(t, flux, np.full(t.size, 0.002), np.ones(t.size, bool), {"kic": 1})
    _, _, info = preprocess_lightcurve(lc, LightCurvePreprocess(length=64, fold="lombscargle"))
    assert info["period_source"] == "lombscargle" and info["period"] == pytest.approx(2.7183, rel=2e-3)


# -- TESS target pixels (constructed following the TESS TPF column layout) ----------------------
def _write_tpf(path, *, aperture_bits: bool = True, nan_cadence: int | None = None):
    n, ny, nx = 50, 5, 6
    rng = np.random.default_rng(0)
    t = 1500.0 + np.arange(n) * (2.0 / 60 / 24)
    star = np.zeros((ny, nx))
    star[1:4, 2:5] = [[50, 100, 50], [100, 400, 100], [50, 100, 50]]
    cube = (10.0 + star[None] * (1 + 0.01 * np.sin(np.arange(n) / 5))[:, None, None]
            + rng.normal(0, 0.1, (n, ny, nx))).astype(np.float32)
    if nan_cadence is not None:
        cube[nan_cadence, 2, 3] = np.nan
    quality = np.zeros(n, np.int32)
    quality[7] = 32  # reaction-wheel desaturation: in TESS's default bitmask
    quality[8] = 2048  # stray light: not in the default bitmask
    cols = fits.ColDefs([
        fits.Column("TIME", "D", array=t), fits.Column("CADENCENO", "J", array=np.arange(n)),
        fits.Column("RAW_CNTS", f"{ny * nx}J", dim=f"({nx},{ny})", array=np.zeros((n, ny, nx), np.int32)),
        fits.Column("FLUX", f"{ny * nx}E", dim=f"({nx},{ny})", array=cube),
        fits.Column("FLUX_ERR", f"{ny * nx}E", dim=f"({nx},{ny})", array=np.full((n, ny, nx), 0.5, np.float32)),
        fits.Column("FLUX_BKG", f"{ny * nx}E", dim=f"({nx},{ny})", array=np.zeros((n, ny, nx), np.float32)),
        fits.Column("QUALITY", "J", array=quality),
    ])
    primary = fits.PrimaryHDU()
    primary.header.update(TELESCOP="TESS", MISSION="TESS", OBJECT="TIC 12345", TICID=12345, SECTOR=14,
                          CAMERA=1, CCD=2, RA_OBJ=10.5, DEC_OBJ=-20.25, TESSMAG=9.1, TEFF=5800.0)
    pixels = fits.BinTableHDU.from_columns(cols, name="PIXELS")
    pixels.header.update(BJDREFI=2457000, BJDREFF=0.0)
    aperture = np.ones((ny, nx), np.int32)  # bit 1: collected
    if aperture_bits:
        aperture[1:4, 2:5] |= 2  # bit 2: in the optimal aperture
    fits.HDUList([primary, pixels, fits.ImageHDU(aperture, name="APERTURE")]).writeto(path)
    return cube, star


def test_tpf_aperture_sum_with_pipeline_aperture(tmp_path):
    cube, star = _write_tpf(tmp_path / "tess-s0014-tp.fits", nan_cadence=20)
    lc = read_lightcurve(tmp_path / "tess-s0014-tp.fits")
    assert lc.meta["mission"] == "tess" and lc.meta["tic"] == 12345 and lc.meta["sector"] == 14
    assert lc.meta["aperture_method"] == "pipeline" and lc.meta["aperture_npix"] == 9
    assert lc.meta["aperture"] == (star > 0).astype(int).tolist()
    expected = cube[:, 1:4, 2:5].astype(np.float64).sum(axis=(1, 2))
    ok = np.isfinite(expected)
    np.testing.assert_allclose(lc.flux[ok], expected[ok], rtol=1e-6)
    np.testing.assert_allclose(lc.flux_err[ok], np.sqrt(9 * 0.25))
    assert len(lc) == 50 and not lc.valid[20] and not lc.valid[7] and lc.valid[8]
    assert lc.n_valid == 48 and lc.meta["time_unit"] == "BTJD"


def test_ffi_cutout_without_aperture_falls_back_to_threshold(tmp_path):
    _write_tpf(tmp_path / "tess-cutout.fits", aperture_bits=False)
    lc = read_target_pixels(tmp_path / "tess-cutout.fits")
    assert lc.meta["aperture_method"].startswith("threshold")
    assert lc.meta["aperture_npix"] == 9  # the star's 3x3 pixels stand out of the 10 e/s background
    everything = read_target_pixels(tmp_path / "tess-cutout.fits", aperture="all")
    assert everything.meta["aperture_npix"] == 30


# -- bad input --------------------------------------------------------------------------------
def test_bad_files_raise_clear_errors(kepler, tmp_path):
    truncated = tmp_path / "truncated_llc.fits"
    truncated.write_bytes((kepler / Q3).read_bytes()[:200_000])
    with pytest.raises(AstroReadError, match="not a readable FITS file"):
        read_lightcurve(truncated)
    # cut inside the last (APERTURE) header: astropy drops that HDU with a warning only
    truncated.write_bytes((kepler / Q3).read_bytes()[:460_000])
    with pytest.raises(AstroReadError, match="truncated: .*HDU #2"):
        read_lightcurve(truncated)

    primary_only = tmp_path / "primary_only.fits"
    fits.HDUList([fits.PrimaryHDU()]).writeto(primary_only)
    with pytest.raises(AstroReadError, match="no LIGHTCURVE or PIXELS extension"):
        read_lightcurve(primary_only)

    with fits.open(kepler / Q3) as hdul:
        keep = [c for c in hdul[1].columns if c.name not in ("PDCSAP_FLUX_ERR",)]
        table = fits.BinTableHDU.from_columns(keep, header=hdul[1].header, name="LIGHTCURVE")
        no_err = fits.HDUList([hdul[0].copy(), table])
        no_err.writeto(tmp_path / "no_err_llc.fits")
        hdul[1].data["PDCSAP_FLUX"][:] = np.nan
        hdul[1].data["SAP_FLUX"][:] = np.nan
        hdul.writeto(tmp_path / "allnan_llc.fits")
    with pytest.raises(AstroReadError, match="lacks column.*PDCSAP_FLUX_ERR"):
        read_lightcurve(tmp_path / "no_err_llc.fits", flux_column="PDCSAP_FLUX")
    with pytest.raises(AstroReadError, match="no finite value"):
        read_lightcurve(tmp_path / "allnan_llc.fits")


def test_lightcurves_source_end_to_end(kepler, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in (Q3, Q4):
        shutil.copy(kepler / name, inputs / name)
    (inputs / "kplr000000001-truncated_llc.fits").write_bytes((kepler / Q4).read_bytes()[:50_000])
    with fits.open(kepler / Q4) as hdul:
        hdul[1].data["PDCSAP_FLUX"][:] = np.nan
        hdul[1].data["SAP_FLUX"][:] = np.nan
        hdul[0].header["KEPLERID"] = 2
        hdul.writeto(inputs / "kplr000000002-allnan_llc.fits")
    out = tmp_path / "shards"
    summary = run_ingest(LightCurvesSource(_options(LightCurvesSource, lc_length=128)), [inputs], out, progress=False)
    assert summary["inputs_seen"] == 4 and summary["samples_written"] == 1 and summary["inputs_skipped"] == 2
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in summary["skipped"]}
    assert reasons["kplr000000001-truncated_llc.fits"].startswith("not a readable FITS file")
    assert "no finite value" in reasons["kplr000000002-allnan_llc.fits"]
    assert summary["counters"]["segments_per_star"] == {"2": 1}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_samples"] == 1

    import webdataset as wds

    (sample,) = list(wds.WebDataset(str(out / manifest["shards"][0]["name"]), shardshuffle=False).decode())
    assert sample["__key__"] == "kic_11442793"
    assert sample["lightcurve.npy"].shape == (128, 3) and sample["lightcurve_mask.npy"].shape == (128,)
    assert int(sample["lightcurve_mask.npy"].sum()) == 125  # 128 bins over Q3+Q4, 3 in the gap
    meta = sample["json"]
    assert meta["ids"] == {"kic": 11442793} and meta["n_cadences"] == 5391 and meta["n_valid"] == 5142
    assert meta["license"] == "public-domain (NASA/MAST)" and len(meta["segments"]) == 2


def _write_tess_lc(path, sector: int, t_start: float, level: float):
    n = 720  # 2-minute cadences over one day
    t = t_start + np.arange(n) / 720.0
    flux = level * (1 + 0.01 * np.sin(2 * np.pi * t / 0.37))
    flux[100:110] = np.nan  # a gap
    quality = np.zeros(n, np.int32)
    quality[200] = 1  # attitude tweak: default bitmask
    cols = [fits.Column("TIME", "D", array=t), fits.Column("PDCSAP_FLUX", "E", array=flux.astype(np.float32)),
            fits.Column("PDCSAP_FLUX_ERR", "E", array=np.full(n, level * 1e-3, np.float32)),
            fits.Column("SAP_FLUX", "E", array=flux.astype(np.float32)),
            fits.Column("SAP_FLUX_ERR", "E", array=np.full(n, level * 1e-3, np.float32)),
            fits.Column("QUALITY", "J", array=quality)]
    primary = fits.PrimaryHDU()
    primary.header.update(TELESCOP="TESS", MISSION="TESS", TICID=261136679, SECTOR=sector, RA_OBJ=84.29, DEC_OBJ=-80.47)
    fits.HDUList([primary, fits.BinTableHDU.from_columns(cols, name="LIGHTCURVE")]).writeto(path)


def test_tess_sectors_stitch_and_catalogue_period_fold(tmp_path):
    _write_tess_lc(tmp_path / "tess-s0001-261136679_lc.fits", 1, 1325.0, 5000.0)
    _write_tess_lc(tmp_path / "tess-s0013-261136679_lc.fits", 13, 1653.0, 6500.0)
    s1 = read_lightcurve(tmp_path / "tess-s0001-261136679_lc.fits")
    assert s1.meta["mission"] == "tess" and s1.meta["tic"] == 261136679 and s1.meta["quality_column"] == "QUALITY"
    assert s1.n_valid == 720 - 10 - 1 and s1.meta["time_unit"] == "BTJD"
    (tmp_path / "periods.csv").write_text("tic,period\n261136679,0.37\n")
    options = _options(LightCurvesSource, lc_length=50, fold="catalog", periods=tmp_path / "periods.csv")
    summary = run_ingest(LightCurvesSource(options), [tmp_path], tmp_path / "out", progress=False)
    assert summary["samples_written"] == 1 and summary["counters"]["segments_per_star"] == {"2": 1}

    import webdataset as wds

    shard = tmp_path / "out" / json.loads((tmp_path / "out" / "manifest.json").read_text())["shards"][0]["name"]
    (sample,) = list(wds.WebDataset(str(shard), shardshuffle=False).decode())
    meta = sample["json"]
    assert sample["__key__"] == "tic_261136679" and [s["sector"] for s in meta["segments"]] == [1, 13]
    assert [s["median_flux"] for s in meta["segments"]] == pytest.approx([5000.0, 6500.0], rel=1e-3)
    assert meta["preprocess"]["period"] == 0.37 and meta["preprocess"]["period_source"] == "catalog"
    assert meta["n_valid"] == 2 * 709 and sample["lightcurve_mask.npy"].all()
    phase, flux = sample["lightcurve.npy"][:, 0], sample["lightcurve.npy"][:, 1]
    expected = np.sin(2 * np.pi * (phase + 1325.0 / 0.37))  # phase counts from the first valid cadence, t=1325
    assert np.corrcoef(flux, expected)[0, 1] > 0.99
    assert 1.7 < flux.max() - flux.min() < 2.1  # a sine's peak-to-peak in units of 1.4826 MAD
