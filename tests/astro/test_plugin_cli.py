"""The astro plugin through core's registry and CLI: one `clipzoo ingest astro ...` run per source, the model config."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from clipzoo.core.cli import main
from clipzoo.core.plugins import get_registry


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_registry_has_astro_sources_tasks_and_config():
    registry = get_registry()
    assert "astro" in registry.loaded_plugins
    sources = {n for d, n in registry.sources if d == "astro"}
    assert sources == {"lightcurves", "spectra", "catalog", "crossmatch", "simulated"}
    assert {"astro/sim-classification", "astro/sim-prototypes", "astro/sim-retrieval", "astro/classification",
            "astro/prototypes", "astro/retrieval"} <= set(registry.tasks)
    assert "astrom3-tiny" in registry.model_config_names()


def test_astrom3_tiny_builds_three_towers_with_preprocess():
    import torch

    from clipzoo.astro.catalogs import FEATURE_NAMES
    from clipzoo.core.models import create_model

    model = create_model("astrom3-tiny")
    assert model.modalities == ["lightcurve", "spectrum", "metadata"]
    assert model.preprocess["lightcurve"]["length"] == 64 and model.preprocess["lightcurve"]["fold"] == "catalog"
    assert model.preprocess["spectrum"]["grid"] == {"start": 3600.0, "stop": 9800.0, "size": 128, "unit": "Angstrom",
                                                    "spacing": "linear"}
    assert model.preprocess["metadata"]["features"] == list(FEATURE_NAMES)
    batch = {"lightcurve": torch.randn(4, 64, 3), "lightcurve_mask": torch.ones(4, 64, dtype=torch.bool),
             "spectrum": torch.randn(4, 128, 2), "spectrum_mask": torch.zeros(4, 128, dtype=torch.bool),
             "metadata": torch.randn(4, len(FEATURE_NAMES)),
             "metadata_mask": torch.ones(4, len(FEATURE_NAMES), dtype=torch.bool)}
    batch["spectrum_mask"][:2] = True  # two stars without a spectrum
    out = model(batch)
    assert {m: tuple(f.shape) for m, f in out["features"].items()} == {m: (4, 32) for m in model.modalities}
    assert out["masks"]["spectrum"].tolist() == [True, True, False, False]
    assert all(torch.isfinite(f).all() for f in out["features"].values())


def test_cli_ingest_lightcurves_and_spectra(shared_data, tmp_path):
    astro = shared_data / "astro"
    assert main(["ingest", "astro", "lightcurves", str(astro / "lightcurves"), "--out", str(tmp_path / "lc"),
                 "--lc-length", "64", "--fold", "lombscargle"]) == 0
    m = _manifest(tmp_path / "lc")
    assert m["num_samples"] == 1 and m["ingest"]["counters"]["mission"] == {"kepler": 2}
    assert main(["ingest", "astro", "spectra", str(astro / "spectra"), "--out", str(tmp_path / "sp"),
                 "--grid-size", "128"]) == 0
    m = _manifest(tmp_path / "sp")
    assert m["num_samples"] == 1 and len(m["ingest"]["skipped"]) == 4


def test_cli_ingest_catalog_and_crossmatch(shared_data, tmp_path):
    astro = shared_data / "astro"
    assert main(["ingest", "astro", "catalog", str(astro / "catalogs" / "gaia"), "--out", str(tmp_path / "cat")]) == 0
    m = _manifest(tmp_path / "cat")
    assert m["num_samples"] == 50 and m["ingest"]["notes"]["feature_stats"]["count"][0] == 50
    # stats of one ingest applied to another
    assert main(["ingest", "astro", "catalog", str(astro / "catalogs" / "gaia"), "--out", str(tmp_path / "cat2"),
                 "--stats", str(tmp_path / "cat" / "manifest.json")]) == 0
    assert _manifest(tmp_path / "cat2")["ingest"]["notes"]["feature_stats"] == m["ingest"]["notes"]["feature_stats"]
    # --model: lengths and grid from the model's preprocess (64 cadences, 128 px), explicit --fold wins
    assert main(["ingest", "astro", "crossmatch", str(astro / "lightcurves"), str(astro / "spectra"),
                 "--out", str(tmp_path / "xm"), "--model", "astrom3-tiny", "--fold", "lombscargle"]) == 0
    m = _manifest(tmp_path / "xm")
    import webdataset as wds

    samples = list(wds.WebDataset(str(tmp_path / "xm" / m["shards"][0]["name"]), shardshuffle=False).decode())
    assert {s["lightcurve.npy"].shape for s in samples} == {(64, 3)}
    assert {s["spectrum.npy"].shape for s in samples} == {(128, 2)}
    k90 = next(s for s in samples if s["__key__"] == "kic_11442793")
    assert k90["json"]["lightcurve"]["period_source"] == "lombscargle"
    # Kepler-90 (light curve + header metadata) and the DESI star (spectrum only) lie 40 degrees apart
    assert m["num_samples"] == 2
    assert m["ingest"]["counters"]["modalities"] == {"lightcurve+metadata": 1, "spectrum": 1}
    assert m["ingest"]["notes"]["crossmatch"]["joined_by_position"] == 0


def test_cli_ingest_simulated_and_bad_options(tmp_path, capsys, shared_data):
    assert main(["ingest", "astro", "simulated", "--n-per-class", "3", "--seed", "5",
                 "--out", str(tmp_path / "sim")]) == 0
    m = _manifest(tmp_path / "sim")
    assert m["num_samples"] == 15
    assert m["ingest"]["counters"]["class"] == {c: 3 for c in ("DSCT", "EB", "LPV", "ROT", "RRL")}
    assert main(["ingest", "astro", "simulated", "some-file", "--out", str(tmp_path / "sim2")]) != 0
    assert "takes no inputs" in capsys.readouterr().err
    assert main(["ingest", "astro", "lightcurves", str(shared_data / "astro" / "lightcurves"), "--out",
                 str(tmp_path / "lc"), "--model", "no-such-model"]) != 0
    assert "--model no-such-model: no such model config" in capsys.readouterr().err


def test_plugin_import_stays_light():
    code = ("import sys; from clipzoo.astro import plugin; from clipzoo.core.plugins import PluginRegistry; "
            "plugin.register(PluginRegistry()); "
            "print(sorted(m for m in ('torch', 'astropy', 'numpy', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_simulated_set_is_seeded():
    from clipzoo.astro.simulate import SimulationConfig, simulate_samples

    a, _ = simulate_samples(SimulationConfig(n_per_class=2, seed=3))
    b, _ = simulate_samples(SimulationConfig(n_per_class=2, seed=3))
    assert [s["json"]["label"] for s in a] == [s["json"]["label"] for s in b]
    np.testing.assert_array_equal(a[0]["lightcurve.npy"], b[0]["lightcurve.npy"])
    one_each, _ = simulate_samples(SimulationConfig(n_per_class=1, seed=0))
    periods = {s["json"]["label"]: s["json"]["period"] for s in one_each}
    assert 0.3 <= periods["EB"] <= 10 and 0.45 <= periods["RRL"] <= 0.85 and 0.03 <= periods["DSCT"] <= 0.2
    assert 90 <= periods["LPV"] <= 450 and 1 <= periods["ROT"] <= 30
