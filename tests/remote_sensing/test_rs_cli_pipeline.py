"""The clipzoo CLI and the remote_sensing pipeline recipe, end to end on the shared files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipzoo.core.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_cli_ingest_captions(rs_data, tmp_path, capsys):
    out = tmp_path / "caps"
    code = main(["ingest", "remote_sensing", "captions", str(rs_data / "captions" / "rsitmd_precomp"),
                 "--captions-only", "--lang", "en", "--out", str(out)])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_samples"] == 452
    assert manifest["ingest"]["counters"]["captions_by_lang"] == {"en": 2260}
    assert manifest["source"]["options"]["captions_only"] is True


def test_cli_ingest_captions_without_images_is_a_clear_error(rs_data, tmp_path, capsys):
    code = main(["ingest", "remote_sensing", "captions", str(rs_data / "captions" / "ucm_precomp"),
                 "--out", str(tmp_path / "x")])
    assert code == 2 and "give --images DIR" in capsys.readouterr().err


def test_cli_ingest_geotiff(rs_data, tmp_path):
    out = tmp_path / "chips"
    tif = rs_data / "geotiff" / "LC08_L1TP_224077_20200518_20200518_01_RT_B2_60m.TIF"
    code = main(["ingest", "remote_sensing", "geotiff", str(tif), "--chip-size", "128", "--nodata", "0",
                 "--out", str(out)])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_samples"] == 35  # 7 x 5 whole 128-px chips, none over half nodata
    raster = manifest["ingest"]["notes"]["rasters"][str(tif)]
    assert raster["crs"] == "EPSG:32621" and raster["stats"][0]["p_high"] == 8499.0


@pytest.mark.slow
def test_pipeline_recipe_runs_end_to_end(tmp_path, monkeypatch, capsys):
    """The demo recipe with training cut to a few steps: ingest x3 -> train -> bench (registering is core's, and
    its MLflow store setup alone takes longer than the rest)."""
    monkeypatch.setenv("CLIPZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(["pipeline", "run", str(REPO / "pipelines" / "remote_sensing.yaml"), "--workdir", str(tmp_path / "runs"),
                 "--no-register", "--train.max_steps=4", "--train.checkpoint_every=4", "--run.mlflow=false",
                 "--run.progress=false"])
    assert code == 0
    work = tmp_path / "runs" / "remote_sensing"
    counts = {n: json.loads((work / "shards" / n / "manifest.json").read_text())["num_samples"]
              for n in ("chips", "heldout", "captions")}
    assert counts == {"chips": 690, "heldout": 192, "captions": 210 + 452 + 1092}
    bench = json.loads((work / "bench.json").read_text())["tasks"]["remote_sensing/chip-location"]
    assert bench["metrics"]["image_location_pairs"] == 192.0
    assert 0.0 <= bench["metrics"]["mean_recall"] <= 1.0
    assert "remote_sensing/chip-location" in capsys.readouterr().out
