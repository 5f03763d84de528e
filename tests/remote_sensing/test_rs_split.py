"""Spatial split of raster chips by tile blocks (issue 15.4): held-out windows never come within a chip of a training
window, on the real shared rasters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rs_helpers import read_shards

from clipzoo.core.cli import main
from clipzoo.remote_sensing.geotiff import BlockSplit, RasterError

RGBN = "rgbn_suba.tif"  # 276 x 212 px
LANDSAT = "LC08_L1TP_224077_20200518_20200518_01_RT_B2_60m.TIF"  # 1003 x 758 px, nodata 0 borders


def _windows(folder: Path) -> list[tuple[int, int, int]]:
    out = []
    for sample in read_shards(folder):
        w = sample["json"]["window"]
        out.append((w["row_off"], w["col_off"], w["width"]))
    return out


def _gap(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    """Chebyshev distance in pixels between two square windows (negative when they overlap)."""
    (ra, ca, sa), (rb, cb, sb) = a, b
    return max(rb - (ra + sa), ra - (rb + sb), cb - (ca + sa), ca - (cb + sb))


def _ingest(tif: Path, out: Path, *args: str) -> dict:
    assert main(["ingest", "remote_sensing", "geotiff", str(tif), "--out", str(out), *args]) == 0
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("name, args, counts, test_blocks", [
    (RGBN, ["--chip-size", "32", "--bands", "rgbn", "--sensor", "rgbn", "--max-nodata", "0.25"],
     {"train": 270, "test": 56}, [[1, 0], [1, 1]]),
    (LANDSAT, ["--chip-size", "128", "--nodata", "0", "--split-block", "3"],
     {"train": 140, "test": 44}, [[1, 0], [1, 1]]),
])
def test_split_keeps_test_windows_a_chip_away_from_training(rs_data, tmp_path, name, args, counts, test_blocks):
    tif = rs_data / "geotiff" / name
    size = int(args[1])
    windows, manifests = {}, {}
    for side, stride in (("train", size // 4), ("test", size // 2)):
        manifests[side] = _ingest(tif, tmp_path / side, *args, "--stride", str(stride), "--split", side)
        windows[side] = _windows(tmp_path / side)
        assert {s["json"]["split"] for s in read_shards(tmp_path / side)} == {side}
    assert {side: len(w) for side, w in windows.items()} == counts
    split = manifests["test"]["ingest"]["notes"]["rasters"][str(tif)]["split"]
    assert split["test_blocks"] == test_blocks and split["gap_px"] == size
    assert split == {**manifests["train"]["ingest"]["notes"]["rasters"][str(tif)]["split"], "side": "test"}
    closest = min(_gap(a, b) for a in windows["train"] for b in windows["test"])
    assert closest >= size  # a gap of at least one chip between every training and every held-out window
    # every held-out window lies inside the declared test blocks
    block = split["block_px"]
    for row, col, w in windows["test"]:
        assert {(r // block, c // block) for r in (row, row + w - 1) for c in (col, col + w - 1)} <= {
            tuple(b) for b in test_blocks}


def test_without_split_every_chip_is_kept(rs_data, tmp_path):
    tif = rs_data / "geotiff" / RGBN
    manifest = _ingest(tif, tmp_path / "all", "--chip-size", "32", "--stride", "16", "--max-nodata", "0.25")
    nodata = manifest["ingest"]["counters"]["skipped_by_kind"]["nodata"]
    assert manifest["num_samples"] + nodata == 12 * 16  # (212 - 32) // 16 + 1 rows x (276 - 32) // 16 + 1 columns
    assert manifest["ingest"]["notes"]["rasters"][str(tif)]["split"] is None


def test_block_split_sides_by_hand():
    """A 4 x 4 grid of 10-px blocks: exact sides of windows next to a chosen test block."""
    split = BlockSplit(block=10, gap=5, test_fraction=0.25, seed=1)
    test = split.test_blocks(40, 40)
    assert len(test) == 4 and test == split.test_blocks(40, 40)  # seeded: the train and test runs agree
    one = frozenset({(1, 1)})  # pixels 10..19 x 10..19
    assert split.side(10, 10, 10, 40, 40, one) == "test"
    assert split.side(10, 12, 10, 40, 40, one) is None  # straddles blocks (1,1) and (1,2)
    assert split.side(8, 25, 5, 40, 40, one) == "train"  # 5 px right of the test block: just the gap
    assert split.side(8, 24, 5, 40, 40, one) is None  # 4 px away: inside the gap
    assert split.side(0, 10, 5, 40, 40, one) == "train"  # 5 px above it
    assert split.side(30, 30, 10, 40, 40, one) == "train"
    with pytest.raises(RasterError, match="single 64-px split block"):
        BlockSplit(block=64, gap=8).test_blocks(40, 40)
    with pytest.raises(ValueError, match="between 0 and 1"):
        BlockSplit(block=10, gap=5, test_fraction=1.0)


@pytest.mark.parametrize("flag, value, message", [
    ("--split-gap", "0", "--split-gap 0: held-out chips need a gap of at least 1 chip"),
    ("--split-block", "0", "--split-block 0: a block is at least 1 chip"),
    ("--split-test-fraction", "1.5", "--split-test-fraction: the test fraction is between 0 and 1"),
])
def test_bad_split_options_are_one_line_and_write_nothing(rs_data, tmp_path, capsys, flag, value, message):
    out = tmp_path / "x"
    code = main(["ingest", "remote_sensing", "geotiff", str(rs_data / "geotiff" / RGBN), "--chip-size", "32",
                 "--split", "test", flag, value, "--out", str(out)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not (out / "manifest.json").exists()
