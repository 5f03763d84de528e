"""A trained astro model carries its training data's preprocessing (issue 14, "preprocessing on the model").

The simulated source records what it applied (light-curve length and folding, spectral grid, metadata feature
statistics) as the manifest's ``preprocess`` note; core's trainer merges it into the model's ``preprocess``,
refusing a contradiction with the model config. New raw data then needs no ``stats=``: benchmarking and
ingesting with the model give what giving the training manifest explicitly gives.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from clipzoo.astro.sources.simulated import SimulatedSource
from clipzoo.core.data.writer import Manifest
from clipzoo.core.ingest import run_ingest

SIM_TASKS = ["astro/sim-classification", "astro/sim-prototypes", "astro/sim-retrieval"]
NEW_STARS = {"n_per_class": 10, "seed": 3, "test_per_class": 6, "test_seed": 4}  # not the training stars


def _train(shards, out, model_config="astrom3-tiny"):
    from clipzoo.core.train import load_config, train

    cfg = load_config(base={
        "model": {"config": model_config},
        "data": {"train": str(shards), "batch_size": 32, "workers": 0, "shuffle_buffer": 50},
        "train": {"max_steps": 3, "checkpoint_every": 1000, "threads": 1},
        "run": {"output_dir": str(out), "mlflow": False, "progress": False, "seed": 0},
    })
    return train(cfg)


def _bench(model_dir, cache, stats=None):
    from clipzoo.core.bench import run_benchmark

    options = {t: dict(NEW_STARS) for t in SIM_TASKS}
    options["astro/sim-retrieval"] = {"test_per_class": 6, "test_seed": 4}
    if stats is not None:
        for o in options.values():
            o["stats"] = str(stats)
    results = run_benchmark(str(model_dir), SIM_TASKS, task_options=options, cache_dir=cache, log=False,
                            print_table=False, bootstrap=50)
    return results["tasks"]


def _simulated(out, **options):
    run_ingest(SimulatedSource(argparse.Namespace(**options)), [], out, progress=False)
    return Manifest.load(out)


@pytest.mark.slow  # trains a model (3 steps) and benchmarks it twice: ~20 s on 2 cores
def test_trained_model_carries_the_stats_and_new_data_needs_no_stats_argument(tmp_path):
    from clipzoo.astro.bench import SimulatedSet

    shards = tmp_path / "train"
    manifest = _simulated(shards, n_per_class=20, seed=0)
    note = manifest.ingest["notes"]["preprocess"]
    assert note["metadata"]["feature_stats"] == manifest.ingest["notes"]["feature_stats"]
    result = _train(shards, tmp_path / "run")
    assert result.steps == 3

    saved = json.loads((result.model_dir / "config.json").read_text(encoding="utf-8"))["preprocess"]
    assert saved["metadata"]["feature_stats"] == note["metadata"]["feature_stats"]
    assert saved["lightcurve"]["length"] == 64 and saved["spectrum"]["grid"]["size"] == 128
    # the model's statistics are not what the benchmark would fit on its own training split
    stars = SimulatedSet(**NEW_STARS)
    fitted = stars.split("test")
    stars.bind(saved)
    assert not np.array_equal(fitted[0]["metadata.npy"], stars.split("test")[0]["metadata.npy"])

    # benchmark on new simulated stars: no stats= equals stats=manifest.json (separate caches: computed twice)
    implicit = _bench(result.model_dir, tmp_path / "cache-a")
    explicit = _bench(result.model_dir, tmp_path / "cache-b", stats=shards / "manifest.json")
    for task in SIM_TASKS:
        assert implicit[task]["metrics"] == explicit[task]["metrics"], task
        assert implicit[task]["interval"] == explicit[task]["interval"], task
        assert implicit[task]["settings"] == explicit[task]["settings"], task  # the same datasets by content

    # ingest new raw stars: --model MODEL_DIR equals --stats manifest.json, byte for byte
    by_model = _simulated(tmp_path / "new-model", n_per_class=4, seed=5, model=str(result.model_dir))
    by_stats = _simulated(tmp_path / "new-stats", n_per_class=4, seed=5, stats=shards / "manifest.json")
    fitted_new = _simulated(tmp_path / "new-fit", n_per_class=4, seed=5)
    assert [s.sha256 for s in by_model.shards] == [s.sha256 for s in by_stats.shards]
    assert [s.sha256 for s in fitted_new.shards] != [s.sha256 for s in by_stats.shards]


def test_training_refuses_data_preprocessed_otherwise_than_the_config(tmp_path):
    from clipzoo.core.plugins import get_registry
    from clipzoo.core.train.config import ConfigError

    config = json.loads(get_registry().model_config_path("astrom3-tiny").read_text(encoding="utf-8"))
    config["preprocess"]["spectrum"]["grid"]["stop"] = 9000.0  # the shards' grid ends at 9800 Å
    shards = tmp_path / "train"
    _simulated(shards, n_per_class=2, seed=0)
    with pytest.raises(ConfigError, match=r"preprocess spectrum\.grid\.stop=9800\.0 contradicts 9000\.0 of the model"):
        _train(shards, tmp_path / "run", model_config=config)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def _model_options(model):
    return argparse.Namespace(model=model, lc_length=None, fold=None, grid_start=None, grid_stop=None,
                              grid_size=None, stats=None)


def test_model_is_read_once_per_options_and_a_config_name_loads_only_model_configs(tmp_path, monkeypatch):
    """The crossmatch source asks ``--model`` for its light-curve settings, grid and statistics: one read serves
    all three (a file replaced in between cannot mix two models), and a config name is looked up in a models-only
    registry, not the full plugin load."""
    from clipzoo.astro.sources import options as opts
    from clipzoo.core import plugins

    config = tmp_path / "model.json"
    config.write_text(json.dumps({"preprocess": {"lightcurve": {"length": 64, "fold": "lombscargle"},
                                                 "spectrum": {"grid": {"start": 4000, "stop": 9000, "size": 128}}}}))
    options = _model_options(str(config))
    first = opts.lightcurve_settings(options)
    config.write_text(json.dumps({"preprocess": {"lightcurve": {"length": 999}}}))  # replaced mid-run
    grid = opts.spectral_grid(options)
    assert (first.length, first.fold) == (64, "lombscargle")
    assert (grid.start, grid.stop, grid.size) == (4000.0, 9000.0, 128)
    assert opts.lightcurve_settings(_model_options(str(config))).length == 999  # a new run reads the new file
    described = SimulatedSource(argparse.Namespace(**vars(options))).describe()["options"]
    assert described["model"] == str(config) and not any(k.startswith("_") for k in described)  # no cache

    kinds_asked = []
    real = plugins.get_registry

    def recording(kinds=None):
        kinds_asked.append(None if kinds is None else frozenset(kinds))
        return real(kinds=kinds)

    monkeypatch.setattr(plugins, "get_registry", recording)
    named = _model_options("astrom3-tiny")
    for _ in range(3):
        opts.model_preprocess(named)
    assert kinds_asked == [plugins.MODEL_KINDS]
