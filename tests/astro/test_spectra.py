"""DESI coadd arms and merging, tile vs healpix FIBERMAPs, Gaia XP sampled spectra, common-grid resampling."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from clipzoo.astro.errors import AstroReadError
from clipzoo.astro.sources.spectra import SpectraSource
from clipzoo.astro.spectra import (
    GAIA_XP_WAVELENGTH_NM,
    SpectralGrid,
    Spectrum,
    merge_arms,
    read_desi_coadd,
    read_desi_spectra,
    read_gaia_xp_sampled,
    resample_spectrum,
    spectrum_array,
)
from clipzoo.core.ingest import run_ingest

COADD = "coadd-5-169-thru20210419.fits"
TARGETIDS = [-1695072, 39633297352951412, -1695064, -1695073, 39633300968442591]


@pytest.fixture(scope="module")
def coadd_path(shared_data):
    return shared_data / "astro" / "spectra" / "desi" / COADD


def _options(**overrides):
    parser = argparse.ArgumentParser()
    SpectraSource.add_arguments(parser)
    options = parser.parse_args([])
    vars(options).update(overrides)
    return options


def test_desi_arm_grids_and_fibermap(coadd_path):
    coadd = read_desi_coadd(coadd_path)
    assert coadd.layout == "tile" and coadd.header["TILEID"] == 169 and coadd.header["SPGRP"] == "cumulative"
    grids = {arm: (a["wave"].size, a["wave"][0], a["wave"][-1]) for arm, a in coadd.arms.items()}
    assert grids["B"][0] == 2751 and grids["B"][1:] == pytest.approx((3600.0, 5800.0))
    assert grids["R"][0] == 2326 and grids["R"][1:] == pytest.approx((5760.0, 7620.0))
    assert grids["Z"][0] == 2881 and grids["Z"][1:] == pytest.approx((7520.0, 9824.0))
    for arm in coadd.arms.values():
        assert np.diff(arm["wave"]) == pytest.approx(0.8)
        assert arm["flux"].shape == (5, arm["wave"].size)
    assert list(coadd.fibermap["TARGETID"]) == TARGETIDS
    assert list(coadd.fibermap["FIBER"]) == [2500, 2501, 2502, 2503, 2504]


def test_merged_grid_and_inverse_variance_weighting(coadd_path):
    coadd = read_desi_coadd(coadd_path)
    wave, flux, ivar, valid = merge_arms(coadd)
    assert wave.size == 7781 and wave[0] == pytest.approx(3600.0) and wave[-1] == pytest.approx(9824.0)
    assert valid.sum(axis=1).tolist() == [0, 0, 0, 0, 7781]  # only the last fibre has data (status 0)
    b, r = coadd.arms["B"], coadd.arms["R"]
    j = int(np.argmin(np.abs(wave - 5780.0)))  # in the B/R overlap
    jb, jr = int(np.argmin(np.abs(b["wave"] - 5780.0))), int(np.argmin(np.abs(r["wave"] - 5780.0)))
    fb, ib, fr, ir = b["flux"][4, jb], b["ivar"][4, jb], r["flux"][4, jr], r["ivar"][4, jr]
    assert ib > 0 and ir > 0
    assert flux[4, j] == pytest.approx((fb * ib + fr * ir) / (ib + ir), rel=1e-6)
    assert ivar[4, j] == pytest.approx(ib + ir, rel=1e-6)
    j2 = int(np.argmin(np.abs(wave - 4000.0)))  # blue arm only
    assert flux[4, j2] == pytest.approx(b["flux"][4, int(np.argmin(np.abs(b["wave"] - 4000.0)))], rel=1e-6)


def test_desi_spectra_metadata_and_common_grid(coadd_path):
    spectra = read_desi_spectra(coadd_path)
    assert [s.meta["targetid"] for s in spectra] == TARGETIDS
    assert [s.meta["coadd_fiberstatus"] for s in spectra] == [513, 512, 515, 1, 0]
    star = spectra[4]
    assert star.meta["objtype"] == "TGT" and star.meta["morphtype"] == "PSF" and star.meta["tileid"] == 169
    assert star.meta["ra"] == pytest.approx(215.4975770476502) and star.meta["dec"] == pytest.approx(53.460324212678316)
    arr, mask, info = spectrum_array(star, SpectralGrid(3600, 9800, 512))
    assert arr.shape == (512, 2) and mask.all() and info["n_valid_pixels"] == 512
    assert np.median(arr[:, 0]) == pytest.approx(0.0, abs=1e-6)  # robust standardisation
    with pytest.raises(AstroReadError, match="no valid pixel"):
        spectrum_array(spectra[0])


def test_healpix_coadd_layout(coadd_path, tmp_path):
    """A healpix coadd: SPGRP=healpix header, FIBERMAP without the fibre/tile columns."""
    with fits.open(coadd_path) as hdul:
        for key in ("TILEID", "PETAL", "SPECTRO", "NIGHT"):
            hdul[0].header.remove(key, ignore_missing=True)
        hdul[0].header.update(SPGRP="healpix", SPGRPVAL=26964, HPXPIXEL=26964, HPXNSIDE=64, SURVEY="sv3",
                              PROGRAM="bright")
        fm = hdul["FIBERMAP"]
        keep = [c for c in fm.columns if c.name not in ("FIBER", "PETAL_LOC", "DEVICE_LOC", "LOCATION", "TILEID",
                                                           "FIBERASSIGN_X", "FIBERASSIGN_Y", "PLATE_RA", "PLATE_DEC")]
        hdul["FIBERMAP"] = fits.BinTableHDU.from_columns(keep, header=fm.header, name="FIBERMAP")
        hdul.writeto(tmp_path / "coadd-sv3-bright-26964.fits")
    coadd = read_desi_coadd(tmp_path / "coadd-sv3-bright-26964.fits")
    assert coadd.layout == "healpix" and "FIBER" not in coadd.fibermap.colnames
    star = read_desi_spectra(tmp_path / "coadd-sv3-bright-26964.fits")[4]
    assert star.meta["desi_layout"] == "healpix" and star.meta["healpix"] == 26964 and star.meta["nside"] == 64
    assert (star.meta["survey"], star.meta["program"]) == ("sv3", "bright")
    assert "fiber" not in star.meta and "tileid" not in star.meta and star.n_valid == 7781


def _xp_table(n=3):
    rng = np.random.default_rng(1)
    shape = 1 + 0.2 * np.sin(GAIA_XP_WAVELENGTH_NM / 50.0)
    flux = (1e-17 * shape[None] * rng.uniform(1, 3, (n, 1))).astype(np.float32)
    err = np.abs(flux) * 0.02
    flux[1, 10:20] = np.nan  # a stretch without calibration
    return Table({"source_id": np.array([4295806720, 6636090334814214528, 42], np.int64)[:n], "solution_id": [1] * n,
                  "flux": flux, "flux_error": err}), flux


def test_gaia_xp_sampled_ecsv_and_csv(tmp_path):
    table, flux = _xp_table()
    table.write(tmp_path / "XP_SAMPLED.ecsv")
    spectra = read_gaia_xp_sampled(tmp_path / "XP_SAMPLED.ecsv")
    assert [s.meta["gaia_source_id"] for s in spectra] == [4295806720, 6636090334814214528, 42]
    assert spectra[0].wave.size == 343 and spectra[0].wave[0] == 3360.0 and spectra[0].wave[-1] == 10200.0
    assert spectra[0].n_valid == 343 and spectra[1].n_valid == 333
    np.testing.assert_allclose(spectra[2].flux, flux[2], rtol=1e-6)
    # GaiaXPy-style CSV with array cells as "[f1, f2, ...]"
    rows = ["source_id,flux,flux_error"]
    for sid, f, e in zip(table["source_id"], table["flux"], table["flux_error"]):
        rows.append(f'{sid},"[{", ".join(map(str, f))}]","[{", ".join(map(str, e))}]"')
    (tmp_path / "xp.csv").write_text("\n".join(rows) + "\n")
    from_csv = read_gaia_xp_sampled(tmp_path / "xp.csv")
    assert [s.n_valid for s in from_csv] == [343, 333, 343]
    np.testing.assert_allclose(from_csv[0].flux, spectra[0].flux, rtol=1e-6)
    # XP (20 Å sampling) onto a finer grid interpolates, and the NaN stretch stays masked
    flux_g, ivar_g, valid_g = resample_spectrum(spectra[1], SpectralGrid(3600, 9800, 1000))
    assert valid_g.sum() < 1000 and (ivar_g[valid_g] > 0).all()
    bad = Table({"source_id": [1], "flux": [[1.0, 2.0]]})
    bad.write(tmp_path / "bad.ecsv")
    with pytest.raises(AstroReadError, match="lacks column.*flux_error"):
        read_gaia_xp_sampled(tmp_path / "bad.ecsv")


def test_resample_bins_by_inverse_variance():
    wave = np.arange(4000.0, 4010.0, 1.0)
    spec = Spectrum(wave, np.arange(10.0), np.array([1, 1, 1, 1, 1, 4, 4, 4, 4, 4], float), np.ones(10, bool))
    # output bins [3999.5, 4004.5) and [4004.5, 4009.5)
    flux, ivar, valid = resample_spectrum(spec, SpectralGrid(4002.0, 4007.0, 2))
    assert valid.all()
    assert flux[0] == pytest.approx((0 + 1 + 2 + 3 + 4) / 5) and ivar[0] == pytest.approx(5)
    assert flux[1] == pytest.approx((5 + 6 + 7 + 8 + 9) / 5) and ivar[1] == pytest.approx(20)


def test_spectra_source_skips_empty_targets_and_bad_files(coadd_path, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / COADD).write_bytes(coadd_path.read_bytes())
    (inputs / "coadd-truncated.fits").write_bytes(coadd_path.read_bytes()[:300_000])
    with fits.open(coadd_path) as hdul:
        del hdul["R_IVAR"], hdul["B_IVAR"], hdul["Z_IVAR"]
        hdul.writeto(inputs / "coadd-noivar.fits")
    summary = run_ingest(SpectraSource(_options(grid_size=256)), [inputs], tmp_path / "out", progress=False)
    assert summary["inputs_seen"] == 3 and summary["samples_written"] == 1 and summary["inputs_skipped"] == 2
    by_path = {s["path"].rsplit("/", 1)[-1]: s for s in summary["skipped"]}
    assert by_path["coadd-truncated.fits"]["reason"].startswith("not a readable FITS file")
    assert by_path["coadd-noivar.fits"]["reason"].startswith("no camera arm found")
    targets = [s for s in summary["skipped"] if s["kind"] == "target"]
    assert len(targets) == 4 and "COADD_FIBERSTATUS=513" in targets[0]["reason"]
    assert summary["counters"]["spectrum_survey"] == {"desi/tile": 1}
