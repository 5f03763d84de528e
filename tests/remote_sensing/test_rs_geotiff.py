"""GeoTIFF chipping on the real rasters in shared/ (Landsat B2, RGBN UTM tile, eo-learn float tile) and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from rs_helpers import make_options, read_shards
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from clipzoo.core.ingest import run_ingest
from clipzoo.remote_sensing import geotiff as gt
from clipzoo.remote_sensing.sources import GeoTiffSource

LANDSAT = "LC08_L1TP_224077_20200518_20200518_01_RT_B2_60m.TIF"


@pytest.fixture(scope="module")
def geo(shared_data):
    return shared_data / "remote_sensing" / "geotiff"


# -- reader -----------------------------------------------------------------------------------
def test_landsat_facts_and_stats_with_named_nodata(geo):
    with gt.open_raster(geo / LANDSAT) as src:
        info = gt.describe_raster(src)
        assert info["crs"] == "EPSG:32621"
        assert info["bounds"] == [694005.0, -2812095.0, 754185.0, -2766615.0]
        assert (info["size"], info["dtype"], info["res"], info["declared_nodata"]) == ([1003, 758], "uint16", [60.0, 60.0], None)
        assert gt.nodata_values(src) == []  # the file declares none although its borders are 0
        raw = gt.band_statistics(src, [1])[0]
        assert (raw.valid_pixels, raw.min, raw.p_low) == (760274, 0.0, 0.0)
        s = gt.band_statistics(src, [1], gt.nodata_values(src, [0]))[0]
    assert s.valid_pixels == 760274 - 18366
    assert (s.min, s.max, s.p_low, s.p_high) == (1.0, 13987.0, 7460.0, 8499.0)
    assert s.mean == pytest.approx(7816.476250424581) and s.std == pytest.approx(300.88473269955983)
    assert s.method.startswith("exact")


def test_rgbn_facts_bands_and_declared_nodata(geo):
    with gt.open_raster(geo / "rgbn_suba.tif") as src:
        info = gt.describe_raster(src)
        assert (info["crs"], info["size"], info["count"], info["dtype"]) == ("EPSG:32618", [276, 212], 4, "uint8")
        assert info["bounds"] == [792928.0, 2049052.0, 794308.0, 2050112.0]
        assert gt.nodata_values(src) == [0.0]
        assert gt.resolve_bands("rgb", src) == [1, 2, 3]  # from the colour interpretation
        assert gt.resolve_bands("4,3,2", src) == [4, 3, 2]
        with pytest.raises(gt.RasterError, match=r"no band named 'nir'.*--sensor"):
            gt.resolve_bands("rgbn", src)
        assert gt.resolve_bands("rgbn", src, gt.SENSORS["rgbn"]) == [1, 2, 3, 4]
        assert gt.resolve_bands("nir,red", src, gt.SENSORS["rgbn"]) == [4, 1]
        with pytest.raises(gt.RasterError, match="out of range"):
            gt.resolve_bands("5", src)
        with pytest.raises(gt.RasterError, match="has 13 bands but the raster has 4"):
            gt.resolve_bands("rgb", src, gt.SENSORS["sentinel2"])
        stats = gt.band_statistics(src, [1, 2, 3, 4], gt.nodata_values(src))
    assert [s.valid_pixels for s in stats] == [56180] * 4  # 276*212 - 2332 zero pixels
    assert [(s.p_low, s.p_high) for s in stats] == [(69.0, 204.0), (65.0, 216.0), (62.0, 216.0), (44.0, 193.0)]
    assert [s.min for s in stats] == [41.0, 14.0, 20.0, 1.0]
    assert stats[3].mean == pytest.approx(115.70637237451051)


def test_float_tile_epsg4326_stats(geo):
    with gt.open_raster(geo / "import-tiff-test2.tiff") as src:
        info = gt.describe_raster(src)
        assert (info["crs"], info["size"], info["count"], info["dtype"]) == ("EPSG:4326", [11, 17], 5, "float32")
        assert info["bounds"] == pytest.approx([14.5615, 45.8719, 14.5703, 45.8813])
        stats = gt.band_statistics(src, gt.resolve_bands("all", src))
    assert [s.valid_pixels for s in stats] == [187] * 5
    assert stats[0].min == pytest.approx(0.1817999929189682) and stats[0].max == pytest.approx(0.35510000586509705)
    assert stats[0].p_low == pytest.approx(0.18426) and stats[0].p_high == pytest.approx(0.32295999)
    assert stats[4].mean == pytest.approx(0.18556096273310044)


def test_large_raster_stats_are_estimated_from_bounded_samples(geo, tmp_path):
    with gt.open_raster(geo / LANDSAT) as src:
        s = gt.band_statistics(src, [1], [0.0], max_pixels=300_000)[0]
        assert [(w.col_off, w.row_off) for w in gt.sample_windows(src.width, src.height, 300_000)] == [
            (0, 0), (512, 0), (0, 256), (512, 256)]
    assert s.method == "4 sampled 256x256 windows of 1003x758"
    assert s.valid_pixels == 4 * 256 * 256  # the sampled windows miss the zero border
    assert abs(s.p_low - 7460.0) < 50 and abs(s.p_high - 8499.0) < 150  # exact: 7460 / 8499
    copy = tmp_path / "with_overviews.tif"
    copy.write_bytes((geo / LANDSAT).read_bytes())
    with rasterio.open(copy, "r+") as dst:
        from rasterio.enums import Resampling

        dst.build_overviews([2, 4], Resampling.nearest)
    with gt.open_raster(copy) as src:
        o = gt.band_statistics(src, [1], [0.0], max_pixels=100_000)[0]
    assert o.method == "overview read 363x274 of 1003x758"
    assert abs(o.p_low - 7460.0) < 50 and abs(o.p_high - 8499.0) < 150


def test_chip_offsets_and_counts():
    assert gt.chip_offsets(1003, 128, 128) == [0, 128, 256, 384, 512, 640, 768]
    assert gt.chip_offsets(1003, 128, 128, "pad") == [0, 128, 256, 384, 512, 640, 768, 896]
    assert gt.chip_offsets(300, 256, 128, "pad") == [0, 128]
    assert gt.count_chips(1003, 758, 128, 64) == 14 * 10
    assert gt.count_chips(11, 17, 16, 16) == 0 and gt.count_chips(11, 17, 16, 16, "pad") == 2


def test_chip_metadata_centre_lonlat(geo):
    with gt.open_raster(geo / LANDSAT) as src:
        meta = gt.chip_metadata(src, 0, 0, 128)
    assert meta["bounds"] == [694005.0, -2774295.0, 701685.0, -2766615.0]
    assert meta["center"] == [697845.0, -2770455.0]
    lon, lat = meta["center_lonlat"]
    # UTM 21N (central meridian 57 W), 197.845 km east of it at 25 S
    assert lon == pytest.approx(-55.039049, abs=1e-6) and lat == pytest.approx(-25.036793, abs=1e-6)


# -- the source -------------------------------------------------------------------------------
def test_source_landsat_chips_with_nodata_zero(geo, tmp_path):
    opts = make_options(GeoTiffSource, chip_size=32, stride=32, nodata=[0.0], max_nodata=0.5)
    summary = run_ingest(GeoTiffSource(opts), [geo / LANDSAT], tmp_path, progress=False)
    # 23 x 31 whole 32-px chips; the bottom-left corner is Landsat's zero border
    nodata_skips = [s for s in summary["skipped"] if s["kind"] == "nodata"]
    all_nodata = [s for s in nodata_skips if s["reason"] == "chip is all nodata"]
    assert summary["samples_written"] + len(nodata_skips) == 23 * 31
    assert [s["path"].rsplit("#", 1)[1] for s in all_nodata] == [f"row704-col{c}" for c in (0, 32, 64, 96)]
    assert (len(nodata_skips), summary["samples_written"]) == (10, 703)
    assert nodata_skips[0]["reason"] == "99.7% nodata > --max-nodata 0.5"
    raster = summary["notes"]["rasters"][str(geo / LANDSAT)]
    assert raster["stats"][0]["p_low"] == 7460.0 and raster["nodata_values"] == [0.0]
    samples = {s["__key__"]: s for s in read_shards(tmp_path)}
    first = samples["LC08_L1TP_224077_20200518_20200518_01_RT_B2_60m_r0_c0"]
    img = first["image.npy"]
    assert img.shape == (1, 32, 32) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    meta = first["json"]
    assert meta["crs"] == "EPSG:32621" and meta["window"] == {"col_off": 0, "row_off": 0, "width": 32, "height": 32}
    assert meta["normalization"]["p_low"] == [7460.0] and meta["normalization"]["p_high"] == [8499.0]
    with rasterio.open(geo / LANDSAT) as src:
        raw = src.read(1, window=((0, 32), (0, 32))).astype(np.float64)
    np.testing.assert_allclose(img[0], np.clip((raw - 7460.0) / (8499.0 - 7460.0), 0, 1), rtol=1e-6)
    partial = samples["LC08_L1TP_224077_20200518_20200518_01_RT_B2_60m_r672_c96"]
    assert 0 < partial["json"]["nodata_fraction"] <= 0.5
    with rasterio.open(geo / LANDSAT) as src:
        zeros = src.read(1, window=((672, 704), (96, 128))) == 0
    assert np.all(partial["image.npy"][0][zeros] == 0.0)
    assert partial["json"]["nodata_fraction"] == pytest.approx(zeros.mean())


def test_source_rgbn_band_order_and_lonlat(geo, tmp_path):
    opts = make_options(GeoTiffSource, chip_size=64, bands="nir,red,green", sensor="rgbn", max_nodata=0.2)
    summary = run_ingest(GeoTiffSource(opts), [geo / "rgbn_suba.tif"], tmp_path, progress=False)
    assert summary["samples_written"] == 12  # 4 x 3 chips; left column has 17% zero pixels (declared nodata 0)
    s = {x["__key__"]: x for x in read_shards(tmp_path)}["rgbn_suba_r64_c128"]
    assert s["image.npy"].shape == (3, 64, 64)
    assert [b["index"] for b in s["json"]["bands"]] == [4, 1, 2]
    assert [b["name"] for b in s["json"]["bands"]] == ["nir", "red", "green"]
    assert s["json"]["crs"] == "EPSG:32618"
    lon, lat = s["json"]["center_lonlat"]
    assert s["json"]["center"] == [793728.0, 2049632.0]
    # UTM 18N (central meridian 75 W), 293.7 km east of it at 18.5 N
    assert lon == pytest.approx(-72.218045, abs=1e-6) and lat == pytest.approx(18.516821, abs=1e-6)


def test_source_nan_marked_pixels_and_all_nodata_chip(tmp_path):
    """Float raster declaring -9999 but also marking missing pixels with NaN; one chip entirely missing."""
    data = np.linspace(0.0, 1.0, 2 * 64 * 64, dtype=np.float64).reshape(2, 64, 64)
    data[:, :32, :32] = np.nan  # chip r0 c0: all NaN
    data[0, 40:44, 0:32] = -9999.0  # chip r32 c0: 4 rows of declared nodata (12.5 %)
    data[1, 32, 32] = np.nan  # chip r32 c32: one NaN pixel in band 2 only
    path = tmp_path / "nan.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=2, dtype="float64", nodata=-9999.0,
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000)) as dst:
        dst.write(data)
    opts = make_options(GeoTiffSource, chip_size=32, max_nodata=0.1)
    summary = run_ingest(GeoTiffSource(opts), [path], tmp_path / "out", progress=False)
    skips = {s["path"].rsplit("#", 1)[1]: s["reason"] for s in summary["skipped"]}
    assert skips == {"row0-col0": "chip is all nodata", "row32-col0": "12.5% nodata > --max-nodata 0.1"}
    samples = {s["__key__"]: s for s in read_shards(tmp_path / "out")}
    assert sorted(samples) == ["nan_r0_c32", "nan_r32_c32"]
    c = samples["nan_r32_c32"]
    assert c["json"]["nodata_fraction"] == pytest.approx(1 / 1024)
    assert c["json"]["dtype"] == "float64" and not np.isnan(c["image.npy"]).any()
    assert c["image.npy"][:, 0, 0].tolist() == [0.0, 0.0]  # both bands zeroed where one is missing
    stats = summary["notes"]["rasters"][str(path)]["stats"]
    assert stats[0]["valid_pixels"] == 64 * 64 - 32 * 32 - 4 * 32 - 1


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
def test_all_dtypes_become_float32_chips(tmp_path, dtype):
    data = (np.arange(3 * 16 * 16) % 200).reshape(3, 16, 16).astype(dtype)
    path = tmp_path / f"{dtype}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=3, dtype=dtype, crs="EPSG:4326",
                       transform=Affine(0.001, 0, 10.0, 0, -0.001, 50.0)) as dst:
        dst.write(data)
    summary = run_ingest(GeoTiffSource(make_options(GeoTiffSource, chip_size=16, normalize="none")), [path],
                         tmp_path / "out", progress=False)
    (chip,) = read_shards(tmp_path / "out")
    assert summary["samples_written"] == 1 and chip["image.npy"].dtype == np.float32
    np.testing.assert_array_equal(chip["image.npy"], data.astype(np.float32))
    assert chip["json"]["center_lonlat"] == pytest.approx([10.008, 49.992])


def test_source_pad_edge_on_small_tile(geo, tmp_path):
    opts = make_options(GeoTiffSource, chip_size=16, edge="pad", max_nodata=1.0)
    summary = run_ingest(GeoTiffSource(opts), [geo / "import-tiff-test2.tiff"], tmp_path, progress=False)
    assert summary["samples_written"] == 2
    chips = {s["__key__"]: s for s in read_shards(tmp_path)}
    top = chips["import-tiff-test2_r0_c0"]
    assert top["image.npy"].shape == (5, 16, 16)
    assert top["json"]["nodata_fraction"] == pytest.approx(1 - 11 * 16 / 256)
    assert (top["image.npy"][:, :, 11:] == 0).all()
    assert top["json"]["crs"] == "EPSG:4326"
    assert top["json"]["center_lonlat"] == pytest.approx([14.5615 + 8 * 0.0008, 45.8813 - 8 * 0.0005529411764709715])


def test_source_bad_rasters_are_reported(geo, tmp_path):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + bytes(range(200)))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes((geo / "rgbn_suba.tif").read_bytes()[:20000])
    plain = tmp_path / "plain.tif"
    with pytest.warns(NotGeoreferencedWarning), rasterio.open(plain, "w", driver="GTiff", width=32, height=32,
                                                              count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 32, 32), dtype="uint8"))
    opts = make_options(GeoTiffSource, chip_size=64)
    summary = run_ingest(GeoTiffSource(opts), [garbage, truncated, plain, geo / "rgbn_suba.tif"], tmp_path / "out",
                         progress=False)
    reasons = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert reasons[str(garbage)].startswith("unreadable raster")
    assert reasons[str(truncated)].startswith("read failed: ") and "TIFFReadEncodedTile" in reasons[str(truncated)]
    assert reasons[str(plain)].startswith("not georeferenced")
    assert summary["inputs_skipped"] == 3 and summary["samples_written"] == 12  # the good raster still goes in
    assert not list((tmp_path / "out").glob("*.partial"))
    opts = make_options(GeoTiffSource, chip_size=64, bands="rgbn")
    summary = run_ingest(GeoTiffSource(opts), [geo / "rgbn_suba.tif"], tmp_path / "out2", progress=False)
    assert summary["skipped"][0]["reason"].startswith("no band named 'nir' (bands: 1=red, 2=green, 3=blue, 4=?)")


def test_remote_paths_keep_their_scheme():
    from pathlib import Path

    assert gt.gdal_path(Path("s3://bucket/scene.tif")) == "s3://bucket/scene.tif"
    assert gt.gdal_path(Path("/vsicurl/https://host/cog.tif")) == "/vsicurl/https://host/cog.tif"
    assert gt.is_remote("/vsis3/bucket/x.tif") and not gt.is_remote("/data/x.tif")


def test_vsi_path_reads_like_a_file(geo, tmp_path):
    """GDAL virtual paths go through the same windowed reader (here /vsimem/ via a MemoryFile stand-in)."""
    from rasterio.io import MemoryFile

    with MemoryFile((geo / "rgbn_suba.tif").read_bytes(), filename="suba.tif") as mem:
        assert mem.name.startswith("/vsimem/")
        summary = run_ingest(GeoTiffSource(make_options(GeoTiffSource, chip_size=128)), [mem.name], tmp_path,
                             progress=False)
    assert summary["samples_written"] == 2 and summary["skipped"] == []
    assert math.isclose(summary["notes"]["rasters"][mem.name]["stats"][0]["p_low"], 69.0)


def test_location_features_and_offset_grid(geo, tmp_path):
    f = gt.location_features(0.0, 0.0)
    assert f.shape == (gt.LOCATION_FEATURES,) == (23,) and f.dtype == np.float32
    assert f[:3].tolist() == [1.0, 0.0, 0.0] and f[3:7].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert gt.location_features(90.0, 0.0)[:3] == pytest.approx([0.0, 1.0, 0.0], abs=1e-7)
    assert gt.chip_offsets(276, 32, 16, offset=4) == list(range(4, 245, 16))
    opts = make_options(GeoTiffSource, chip_size=32, stride=16, offset=4, bands="rgbn", sensor="rgbn")
    summary = run_ingest(GeoTiffSource(opts), [geo / "rgbn_suba.tif"], tmp_path, progress=False)
    assert summary["samples_written"] == 16 * 12  # (276-32-4)//16+1 x (212-32-4)//16+1, no nodata in this grid
    chip = {s["__key__"]: s for s in read_shards(tmp_path)}["rgbn_suba_r4_c4"]
    np.testing.assert_array_equal(chip["location.npy"], gt.location_features(*chip["json"]["center_lonlat"]))
    assert chip["location_mask.npy"].all() and chip["location_mask.npy"].shape == (23,)
    assert chip["json"]["window"]["row_off"] == 4 and chip["image.npy"].shape == (4, 32, 32)


def test_internal_mask_band_marks_missing_pixels(tmp_path):
    """COG-style rasters mark missing pixels with a mask band instead of a nodata value."""
    data = np.full((3, 32, 32), 100, dtype="uint8")
    data[:, :, :8] = 7  # real values, but masked out
    path = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8", crs="EPSG:32633",
                           transform=Affine(10, 0, 500000, 0, -10, 5000000)) as dst:
            dst.write(data)
            mask = np.full((32, 32), 255, dtype="uint8")
            mask[:, :8] = 0
            dst.write_mask(mask)
    with gt.open_raster(path) as src:
        assert gt.has_mask_band(src) and gt.nodata_values(src) == []
        stats = gt.band_statistics(src, [1, 2, 3])
        (chip,) = list(gt.iter_chips(src, [1, 2, 3], 32, 32))
    assert stats[0].valid_pixels == 32 * 24 and stats[0].min == 100.0
    assert chip.nodata_fraction == 0.25 and not chip.valid[:, :8].any()


def test_one_band_layout_per_shard_set(geo, tmp_path):
    summary = run_ingest(GeoTiffSource(make_options(GeoTiffSource, chip_size=128)),
                         [geo / "rgbn_suba.tif", geo / LANDSAT], tmp_path, progress=False)
    assert summary["samples_written"] == 2  # the RGBN chips; the 1-band Landsat file is refused
    (skip,) = summary["skipped"]
    assert skip["path"] == str(geo / LANDSAT)
    assert skip["reason"].startswith("1 band(s) selected but ") and "rgbn_suba.tif gave 4" in skip["reason"]


def test_checks_across_rasters_hold_when_each_raster_is_its_own_work_unit(geo, tmp_path):
    """The band-layout rule and distinct keys for rasters of one name span rasters: with one raster per work
    unit (and two workers) they give what one unit reading everything gives."""
    import shutil

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    twins = [shutil.copy(geo / "rgbn_suba.tif", tmp_path / d / "rgbn_suba.tif") for d in ("a", "b")]
    inputs = [*twins, geo / LANDSAT]
    opts = make_options(GeoTiffSource, chip_size=128)
    one = run_ingest(GeoTiffSource(opts), inputs, tmp_path / "one", unit_size=64, progress=False)
    each = run_ingest(GeoTiffSource(opts), inputs, tmp_path / "each", unit_size=1, workers=2, progress=False)
    for summary in (one, each):
        assert summary["samples_written"] == 4  # 2 chips of each twin; the 1-band Landsat file is refused
        (skip,) = summary["skipped"]
        assert skip["path"] == str(geo / LANDSAT) and skip["reason"].startswith("1 band(s) selected but ")
    keys = [sorted(s["__key__"] for s in read_shards(tmp_path / d)) for d in ("one", "each")]
    assert keys[0] == keys[1] and len(set(keys[1])) == 4


def test_chipping_memory_does_not_grow_with_the_raster(tmp_path):
    """2048 x 2048 x 4 uint16 (32 MiB decoded): statistics + every chip stay a few MiB of numpy memory."""
    import tracemalloc

    from rasterio.windows import Window

    path = tmp_path / "big.tif"
    with rasterio.open(path, "w", driver="GTiff", width=2048, height=2048, count=4, dtype="uint16", nodata=0,
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000), tiled=True,
                       blockxsize=256, blockysize=256, compress="lzw") as dst:
        strip = (np.arange(4 * 256 * 2048, dtype=np.uint32) % 4000 + 1).astype("uint16").reshape(4, 256, 2048)
        for row in range(0, 2048, 256):
            dst.write(strip, window=Window(0, row, 2048, 256))
    with rasterio.Env(GDAL_CACHEMAX=16), gt.open_raster(path) as src:
        tracemalloc.start()
        stats = gt.band_statistics(src, [1, 2, 3, 4], gt.nodata_values(src), max_pixels=200_000)
        n = sum(1 for c in gt.iter_chips(src, [1, 2, 3, 4], 256, 256) if gt.normalize(c.data, stats, c.valid).size)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert n == 64 and stats[0].method == "4 sampled 256x256 windows of 2048x2048"
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB of numpy memory for a 32 MiB raster"


@pytest.mark.parametrize("split", [None, "train"])
def test_a_large_raster_is_read_in_windows_with_the_same_shards(geo, tmp_path, split, lose_unit, shard_members):
    """A raster of more than --unit-chips chips becomes several work units (bands of chip rows), so two workers
    split one raster; the chips, their bytes, the counters and the raster notes are those of the whole-raster
    read, and a unit lost to a kill is read again on --resume."""
    import shutil

    (tmp_path / "b").mkdir()
    inputs = [geo / "rgbn_suba.tif", shutil.copy(geo / "rgbn_suba.tif", tmp_path / "b" / "rgbn_suba.tif")]
    options = dict(chip_size=32, stride=16, bands="rgbn", sensor="rgbn", split=split)

    def run(out, unit_chips, **kw):
        source = GeoTiffSource(make_options(GeoTiffSource, unit_chips=unit_chips, **options))
        return run_ingest(source, inputs, tmp_path / out, progress=False, **kw)

    whole = run("whole", 10**6)
    windows = run("windows", 40, workers=2)
    assert whole["units"] == 2 and windows["units"] > 2 * 3  # 12 rows x 16 columns of chips: 5 windows each
    assert shard_members(tmp_path / "windows") == shard_members(tmp_path / "whole") != {}
    for part in ("counters", "skipped", "notes", "inputs_seen", "samples_written"):
        assert windows[part] == whole[part], part

    # a kill during one window's unit: its record and shards are gone, --resume reads that unit alone again
    out = tmp_path / "windows"
    lose_unit(out, 3)
    resumed = run("windows", 40, resume=True)
    assert resumed["samples_written"] == whole["samples_written"]
    assert shard_members(out) == shard_members(tmp_path / "whole")
