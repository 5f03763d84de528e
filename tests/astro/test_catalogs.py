"""Gaia gaia_source tables (TAP JSON, ECSV, VOTable), the K2 Variable Catalogue, and metadata feature vectors."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from clipzoo.astro.catalogs import (
    FEATURE_NAMES,
    FeatureStats,
    parse_k2varcat_line,
    read_catalog_records,
    read_gaia_table,
    read_k2varcat,
    standardise_records,
)
from clipzoo.astro.errors import AstroReadError
from clipzoo.astro.sources.catalog import CatalogSource
from clipzoo.core.ingest import run_ingest


@pytest.fixture(scope="module")
def catalogs(shared_data):
    return shared_data / "astro" / "catalogs"


def _options(**overrides):
    parser = argparse.ArgumentParser()
    CatalogSource.add_arguments(parser)
    options = parser.parse_args([])
    vars(options).update(overrides)
    return options


def test_gaia_tap_json_columns_and_rows(catalogs):
    table = read_gaia_table(catalogs / "gaia" / "cone_search.json")
    assert len(table) == 50 and len(table.colnames) == 153
    assert table.colnames[:3] == ["solution_id", "designation", "source_id"] and table.colnames[-1] == "dist"
    assert table["source_id"].dtype == np.int64 and table["source_id"][0] == 6636090334814214528
    assert table["designation"][0] == "Gaia DR3 6636090334814214528"
    assert table["ra"].dtype == np.float64 and table["ra_error"].dtype == np.float32
    assert table["astrometric_primary_flag"].dtype == bool and table["libname_gspphot"].mask[0]
    assert str(table["ra"].unit) == "deg" and str(table["pmra"].unit) == "mas / yr"
    assert int(table["radial_velocity"].mask.sum()) == 50  # no RVS for these faint stars
    assert int(table["parallax"].mask.sum()) == 6 and int(table["teff_gspphot"].mask.sum()) == 31
    assert table["phot_g_mean_mag"][0] == pytest.approx(19.761656)


def test_gaia_ecsv_and_votable_give_the_same_rows(catalogs, tmp_path):
    table = read_gaia_table(catalogs / "gaia" / "cone_search.json")
    table.write(tmp_path / "gaia.ecsv")
    columns = ["source_id", "ra", "dec", "parallax", "phot_g_mean_mag", "bp_rp"]
    table[columns].write(tmp_path / "gaia.vot", format="votable")
    ecsv, vot = read_gaia_table(tmp_path / "gaia.ecsv"), read_gaia_table(tmp_path / "gaia.vot")
    assert list(ecsv["source_id"]) == list(table["source_id"]) == list(vot["source_id"])
    assert int(ecsv["parallax"].mask.sum()) == 6 and int(np.ma.getmaskarray(vot["parallax"]).sum()) == 6
    broken = ('{"metadata": [{"name": "source_id", "datatype": "long"}, {"name": "ra", "datatype": "double"}], '
              '"data": [[1, 10.5], [2, 3, 4], [3, "n/a"], [4, null]]}')
    (tmp_path / "broken.json").write_text(broken)
    errors: list = []
    table = read_gaia_table(tmp_path / "broken.json", errors)
    assert list(table["source_id"]) == [1, 4] and table["ra"].mask.tolist() == [False, True]
    assert errors == [(2, "data row has 3 values, the metadata defines 2 columns"),
                      (3, "data row does not parse: 'n/a' is not a number")]
    (tmp_path / "empty.json").write_text('{"metadata": [{"name": "source_id", "datatype": "long"}], "data": [["x"]]}')
    with pytest.raises(AstroReadError, match="no parsable data row"):
        read_gaia_table(tmp_path / "empty.json")


def test_k2varcat_rows_and_classes(catalogs):
    rows, errors = read_k2varcat(catalogs / "k2varcat" / "K2VarCat_c1c0v6_full.csv")
    assert len(rows) == 8397 and errors == []
    counts = {label: sum(r.label == label for r in rows) for label in ("AP", "QP", "P", "EB")}
    assert counts == {"AP": 4334, "QP": 3536, "P": 328, "EB": 199}  # " P" stripped
    first = rows[0]
    assert (first.epic, first.label, first.range_pct) == (201122454, "AP", 1.47)
    assert first.period is None and first.amplitude is None
    assert first.extra == [1.002569, 0.992379] and first.proposals == ""
    rrl = next(r for r in rows if r.epic == 201339783)
    assert (rrl.label, rrl.period, rrl.amplitude, rrl.proposals) == ("QP", 0.531435, 28.54, "1018 (RR Lyrae)")


def test_k2varcat_column_count_varies_by_campaign():
    # campaign 2 release: six columns (no trailing numbers), class with a leading space
    row = parse_k2varcat_line(["202501727", " P", "1.25", "0.079179", "0.27", "2081 (AF Star)"], 1)
    assert (row.label, row.period, row.proposals, row.extra) == ("P", 0.079179, "2081 (AF Star)", [])
    row = parse_k2varcat_line(["202512864", "AP", "1.01", "0.000000", "0.00", ""], 2)
    assert row.period is None and row.proposals == ""
    with pytest.raises(ValueError, match="EPIC id"):
        parse_k2varcat_line(["EPIC?", "AP", "1", "0", "0"], 3)
    with pytest.raises(ValueError, match="not numeric"):
        parse_k2varcat_line(["201122454", "AP", "1.4x", "0", "0"], 4)
    with pytest.raises(ValueError, match="at least 5"):
        parse_k2varcat_line(["201122454", "AP"], 5)


def test_feature_vectors_with_stats_and_missing_mask(catalogs):
    records, _ = read_catalog_records(catalogs / "gaia" / "cone_search.json")
    vectors, mask, stats = standardise_records([r["features"] for r in records])
    assert vectors.shape == (50, len(FEATURE_NAMES)) and mask.shape == (50, len(FEATURE_NAMES))
    count = dict(zip(FEATURE_NAMES, mask.sum(axis=0).tolist()))
    assert count["g_mag"] == 50 and count["parallax"] == 44 and count["abs_g"] == 34 and count["teff"] == 19
    assert count["log_period"] == 0 and count["amplitude"] == 0  # Gaia rows carry no variability period
    g = FEATURE_NAMES.index("g_mag")
    assert stats.mean[g] == pytest.approx(np.mean([r["features"]["g_mag"] for r in records]))
    assert vectors[mask[:, g], g].mean() == pytest.approx(0.0, abs=1e-5)
    assert not vectors[~mask].any()
    # gal_b from the table's own "b" column
    assert records[0]["features"]["gal_b"] == pytest.approx(-21.882743552825804)
    again, _, same = standardise_records([r["features"] for r in records], FeatureStats.from_dict(stats.to_dict()))
    np.testing.assert_array_equal(again, vectors)


def test_catalog_source_one_sample_per_row_and_bad_rows(catalogs, tmp_path):
    lines = (catalogs / "k2varcat" / "K2VarCat_c1c0v6_full.csv").read_text().splitlines()
    lines[9] = "201127270,AP,not-a-number,0.0,0.0,,1.0,1.0"  # a row that does not parse
    (tmp_path / "K2VarCat_bad.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "gaia_truncated.json").write_text((catalogs / "gaia" / "cone_search.json").read_text()[:5000])
    inputs = [catalogs / "gaia" / "cone_search.json", tmp_path / "K2VarCat_bad.csv", tmp_path / "gaia_truncated.json"]
    out = tmp_path / "out"
    summary = run_ingest(CatalogSource(_options()), inputs, out, progress=False)
    assert summary["inputs_seen"] == 3 and summary["samples_written"] == 50 + 8396 and summary["inputs_skipped"] == 1
    row_skip = next(s for s in summary["skipped"] if s["kind"] == "row")
    assert row_skip["path"].endswith("K2VarCat_bad.csv:10") and "not numeric" in row_skip["reason"]
    file_skip = next(s for s in summary["skipped"] if s["kind"] == "input")
    assert file_skip["path"].endswith("gaia_truncated.json") and file_skip["reason"].startswith("not valid JSON")
    assert summary["counters"]["class"] == {"AP": 4334, "EB": 199, "P": 328, "QP": 3535}  # line 10 was QP
    manifest = json.loads((out / "manifest.json").read_text())
    stats = manifest["ingest"]["notes"]["feature_stats"]
    assert stats["names"] == list(FEATURE_NAMES) and stats["count"][FEATURE_NAMES.index("range_pct")] == 8396

    import webdataset as wds

    samples = {s["__key__"]: s for s in wds.WebDataset([str(out / sh["name"]) for sh in manifest["shards"]],
                                                       shardshuffle=False).decode()}
    eb = samples["epic_201158453"]
    assert eb["cls"] == 3 and eb["json"]["label"] == "EB" and eb["json"]["period"] == 7.079107
    assert eb["metadata.npy"].shape == (len(FEATURE_NAMES),) and eb["metadata_mask.npy"].sum() == 3
    gaia = samples["gaia_6636090334814214528"]
    assert "cls" not in gaia and gaia["json"]["ids"]["gaia_source_id_str"] == "6636090334814214528"
