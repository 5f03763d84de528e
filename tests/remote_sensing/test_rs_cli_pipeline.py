"""The clipzoo CLI and the remote_sensing pipeline recipe, end to end on the shared files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipzoo.core.cli import main



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


def _recall_at(sims: np.ndarray, k: int) -> float:
    """Share of rows whose own column (the diagonal) is among the row's ``k`` highest scores."""
    own = np.diag(sims)[:, None]
    return float(((sims > own).sum(axis=1) < k).mean())


@pytest.mark.slow
def test_pipeline_recipe_runs_end_to_end(tmp_path, monkeypatch, capsys):
    """The demo recipe with training cut to a few steps: ingest x5 -> train -> bench -> the two ablation variants
    (registering is core's, and its MLflow store setup alone takes longer than the rest). The chip<->location score
    is recomputed here from the trained model's own embeddings of the held-out chips."""
    from rs_helpers import read_shards

    from clipzoo.core.models import LoadedModel

    monkeypatch.setenv("CLIPZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(["pipeline", "run", "remote_sensing", "--workdir", str(tmp_path / "runs"),
                 "--no-register", "--train.max_steps=4", "--train.checkpoint_every=4", "--run.mlflow=false",
                 "--run.progress=false"])
    assert code == 0
    work = tmp_path / "runs" / "remote_sensing"
    counts = {n: json.loads((work / "shards" / n / "manifest.json").read_text())["num_samples"]
              for n in ("chips", "heldout", "scenes", "scenes_rgb", "captions")}
    # chips/heldout: the two sides of the tile-block split (tests/remote_sensing/test_rs_split.py)
    assert counts == {"chips": 270, "heldout": 56, "scenes": 1200, "scenes_rgb": 1200, "captions": 210 + 452 + 1092}
    chip_location = json.loads((work / "bench.json").read_text())["tasks"]["remote_sensing/chip-location"]
    bench = chip_location["metrics"]
    assert chip_location["counts"] == {"image_location_pairs": 56} and "image_location_pairs" not in bench  # a count, no metric

    heldout = read_shards(work / "shards" / "heldout")
    model = LoadedModel.from_package(work / "train" / "model", device="cpu")
    images = model.encode_images([s["image.npy"] for s in heldout])
    locations = model.encode_arrays("location", [s["location.npy"] for s in heldout])
    sims = images @ locations.T
    expected = {f"{a}_R{k}": _recall_at(m, k) for a, m in (("image2location", sims), ("location2image", sims.T))
                for k in (1, 5, 10)}
    for name, value in expected.items():
        assert bench[name] == pytest.approx(value, abs=1e-9), name
    assert bench["mean_recall"] == pytest.approx(np.mean(list(expected.values())), abs=1e-9)

    out = capsys.readouterr().out
    for variant, bands in (("rgbn", "red,green,blue,nir"), ("rgb-only", "red,green,blue")):
        result = json.loads((work / "variants" / variant / "bench.json").read_text())
        task = result["tasks"]["remote_sensing/simulated-zeroshot"]
        assert task["settings"]["dataset"]["name"] == f"simulated-{bands}-s1000"
        line = next(ln for ln in out.splitlines() if f"remote_sensing/simulated-zeroshot [{variant}]" in ln)
        assert "chance 0.1667" in line and "(600 items)" in line  # the variant's entry carries its interval
        assert (work / "variants" / variant / "train" / "model" / "config.json").is_file()
    assert "remote_sensing/chip-location" in out
