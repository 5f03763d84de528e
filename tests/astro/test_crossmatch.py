"""Cross-match of light curves, spectra and catalogue rows into tri-modal samples (by id and by position)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from clipzoo.astro.catalogs import FEATURE_NAMES
from clipzoo.astro.crossmatch import Record, crossmatch
from clipzoo.astro.sources.crossmatch import CrossmatchSource
from clipzoo.core.ingest import run_ingest

KEPLER90 = (284.433491, 49.30516)
DESI_STAR = (215.4975770476502, 53.460324212678316)


def _offset(radec, arcsec, angle_deg=30.0):
    c = SkyCoord(radec[0] * u.deg, radec[1] * u.deg).directional_offset_by(angle_deg * u.deg, arcsec * u.arcsec)
    return float(c.ra.deg), float(c.dec.deg)


def _options(**overrides):
    parser = argparse.ArgumentParser()
    CrossmatchSource.add_arguments(parser)
    options = parser.parse_args([])
    vars(options).update(overrides)
    return options


def test_crossmatch_by_id_then_position():
    recs = [
        Record("lightcurve", "kepler", {"kic": 1}, *KEPLER90),
        Record("metadata", "gaia", {"gaia_source_id": 10}, *_offset(KEPLER90, 0.5)),
        Record("metadata", "gaia", {"gaia_source_id": 11}, *_offset(KEPLER90, 0.9)),  # second Gaia row: not joined
        Record("metadata", "gaia", {"gaia_source_id": 12}, *_offset(KEPLER90, 3.0)),  # outside 1"
        Record("lightcurve", "k2", {"epic": 7}, 170.0, 2.0),
        Record("metadata", "k2varcat", {"epic": 7}, label="EB"),
        Record("spectrum", "desi", {"targetid": 99, "gaia_source_id": 13}, *DESI_STAR),
        Record("metadata", "gaia", {"gaia_source_id": 13}),  # joined by id (DESI REF_ID)
    ]
    groups, stats = crossmatch(recs, radius_arcsec=1.0)
    by_first = {tuple(sorted((r.catalog, tuple(r.ids.items())) for r in g)) for g in groups}
    assert (("gaia", (("gaia_source_id", 10),)), ("kepler", (("kic", 1),))) in by_first
    assert stats["groups"] == 5 and stats["joined_by_id"] == 2 and stats["joined_by_position"] == 1
    assert stats["separation_arcsec"]["max"] == pytest.approx(0.5, abs=1e-6)
    assert stats["modality_combinations"] == {"lightcurve+metadata": 2, "metadata": 2, "spectrum+metadata": 1}


@pytest.fixture()
def crossmatch_inputs(shared_data, tmp_path):
    astro = shared_data / "astro"
    folder = tmp_path / "in"
    folder.mkdir()
    # Gaia rows placed near Kepler-90 and near the DESI star (as a cone search around them would return)
    rows = [(_offset(KEPLER90, 0.5), 2128124000000000001), (_offset(KEPLER90, 0.9), 2128124000000000002),
            (_offset(DESI_STAR, 0.8), 1552000000000000003), ((10.0, -30.0), 5000000000000000004)]
    Table({"source_id": np.array([r[1] for r in rows], np.int64), "ra": [r[0][0] for r in rows],
           "dec": [r[0][1] for r in rows], "phot_g_mean_mag": [13.7, 18.2, 17.1, 12.0], "bp_rp": [0.8, 1.5, 0.6, 1.0],
           "parallax": [0.35, 0.1, 0.2, 1.0], "pmra": [1.0, 2.0, -3.0, 0.0], "pmdec": [-5.0, 0.0, 1.0, 0.0],
           "ruwe": [1.0, 1.1, 0.9, 1.0]}).write(folder / "gaia_cone.ecsv")
    for name in ("kplr011442793-2009350155506_llc.fits", "kplr011442793-2010009091648_llc.fits"):
        (folder / name).write_bytes((astro / "lightcurves" / "kepler" / name).read_bytes())
    # a K2 light curve of EPIC 201158453 (an EB in K2VarCat) made from the Q4 file's cadences
    with fits.open(astro / "lightcurves" / "kepler" / "kplr011442793-2010009091648_llc.fits") as hdul:
        hdul[0].header.update(MISSION="K2", OBJECT="EPIC 201158453", KEPLERID=201158453, CAMPAIGN=1,
                              RA_OBJ=170.5, DEC_OBJ=2.5)
        hdul.writeto(folder / "ktwo201158453-c01_llc.fits")
    (folder / "ktwo000000001-c01_llc.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 50)  # truncated
    (folder / COADD).write_bytes((astro / "spectra" / "desi" / COADD).read_bytes())
    k2var = astro / "catalogs" / "k2varcat" / "K2VarCat_c1c0v6_full.csv"
    (folder / k2var.name).write_bytes(k2var.read_bytes())
    return folder


COADD = "coadd-5-169-thru20210419.fits"


def test_crossmatch_source_tri_modal_samples(crossmatch_inputs, tmp_path):
    out = tmp_path / "out"
    options = _options(min_modalities=2, lc_length=64, grid_size=128, fold="auto", radius=1.0)
    summary = run_ingest(CrossmatchSource(options), [crossmatch_inputs], out, progress=False)
    assert summary["inputs_seen"] == 7 and summary["inputs_skipped"] == 1
    bad = next(s for s in summary["skipped"] if s["kind"] == "input")
    assert bad["path"].endswith("ktwo000000001-c01_llc.fits") and "not a readable FITS file" in bad["reason"]
    assert summary["samples_written"] == 3
    notes = summary["notes"]["crossmatch"]
    assert notes["records"] == {"lightcurve": 2, "spectrum": 1, "metadata": 4 + 8397}
    assert notes["joined_by_id"] == 1 and notes["joined_by_position"] == 2
    assert notes["separation_arcsec"]["min"] == pytest.approx(0.5, abs=1e-3)
    assert notes["separation_arcsec"]["max"] == pytest.approx(0.8, abs=1e-3)
    assert notes["samples_with"] == {"lightcurve": 2, "spectrum": 1, "metadata": 3}
    assert summary["counters"]["modalities"] == {"lightcurve+metadata": 2, "spectrum+metadata": 1}
    assert summary["counters"]["skipped_by_kind"]["policy"] == 8397 - 1 + 2  # lone catalogue rows
    assert summary["counters"]["skipped_by_kind"]["target"] == 4  # empty DESI fibres

    import webdataset as wds

    manifest = json.loads((out / "manifest.json").read_text())
    samples = {s["__key__"]: s for s in wds.WebDataset([str(out / sh["name"]) for sh in manifest["shards"]],
                                                       shardshuffle=False).decode()}
    assert set(samples) == {"kic_11442793", "epic_201158453", "gaia_1552000000000000003"}
    k90 = samples["kic_11442793"]
    assert k90["json"]["ids"]["gaia_source_id"] == 2128124000000000001 and k90["json"]["ids"]["kic"] == 11442793
    assert k90["lightcurve.npy"].shape == (64, 3) and k90["lightcurve_mask.npy"].any()
    assert k90["json"]["lightcurve"]["period_source"] == "lombscargle"  # no catalogue period: LS (fold=auto)
    assert k90["spectrum.npy"].shape == (128, 2) and not k90["spectrum_mask.npy"].any()
    teff = FEATURE_NAMES.index("teff")
    assert k90["metadata_mask.npy"][teff] and k90["json"]["features_raw"]["teff"] == 5970.0  # header fallback
    assert "cls" not in k90
    eb = samples["epic_201158453"]
    assert eb["cls"] == 3 and eb["json"]["label"] == "EB"
    assert eb["json"]["lightcurve"]["period_source"] == "catalog" and eb["json"]["lightcurve"]["period"] == 7.079107
    star = samples["gaia_1552000000000000003"]
    assert star["json"]["ids"]["targetid"] == 39633300968442591 and star["spectrum_mask.npy"].all()
    assert not star["lightcurve_mask.npy"].any() and star["metadata_mask.npy"].any()
    assert sorted(star["json"]["catalogs"]) == ["desi", "gaia"]


def test_inputs_are_classified_by_their_structure(shared_data, tmp_path):
    from clipzoo.astro.crossmatch import classify_input

    astro = shared_data / "astro"
    assert classify_input(astro / "spectra" / "desi" / COADD) == "desi"
    assert classify_input(astro / "lightcurves" / "kepler" / "kplr011442793-2010009091648_llc.fits") == "lightcurve"
    assert classify_input(astro / "catalogs" / "gaia" / "cone_search.json") == "catalog"
    assert classify_input(astro / "catalogs" / "k2varcat" / "K2VarCat_c1c0v6_full.csv") == "catalog"
    # a gaia_source ECSV has *_flux_error columns but no flux_error array column: still a catalogue
    Table({"source_id": [1], "phot_g_mean_flux_error": [2.0], "ra": [1.0], "dec": [2.0]}).write(tmp_path / "g.ecsv")
    assert classify_input(tmp_path / "g.ecsv") == "catalog"
    xp = Table({"source_id": [1], "flux": [np.ones(343)], "flux_error": [np.ones(343)]})
    xp.write(tmp_path / "xp.ecsv")
    xp.write(tmp_path / "xp.fits")
    xp.write(tmp_path / "xp.vot", format="votable")
    assert [classify_input(tmp_path / n) for n in ("xp.ecsv", "xp.fits", "xp.vot")] == ["gaia_xp"] * 3
