"""The astro recipe (shipped in clipzoo.astro) agrees with what the astro plugin registers (the full run is the demo, ~75 s)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from clipzoo.core.pipeline import find_recipe



@pytest.fixture(scope="module")
def recipe():
    return yaml.safe_load(find_recipe("astro").read_text(encoding="utf-8"))


def _fill(value, tmp_path, shared):
    if isinstance(value, str):
        value = value.replace("${shared}", str(shared))
        folder = {"ingest": "{}", "curate": "curated_{}"}  # where the pipeline puts each step's shards
        return re.sub(r"\$\{(ingest|curate)\.([a-z_]+)\}",
                      lambda m: str(tmp_path / folder[m.group(1)].format(m.group(2))), value)
    if isinstance(value, list):
        return [_fill(v, tmp_path, shared) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, tmp_path, shared) for k, v in value.items()}
    return value


def test_recipe_matches_the_plugin(recipe, shared_data, tmp_path):
    from clipzoo.astro.plugin import register
    from clipzoo.core.models import load_config
    from clipzoo.core.plugins import PluginRegistry
    from clipzoo.core.train import load_config as load_train_config

    registry = PluginRegistry()
    register(registry)
    filled = _fill(recipe, tmp_path, shared_data)
    for step in filled["ingest"]:
        domain, source = step["source"].split()
        cls = registry.source(domain, source)
        parser = argparse.ArgumentParser()
        cls.add_arguments(parser)
        cls(parser.parse_args([str(a) for a in step.get("args", [])]))
        for item in step.get("inputs", []):
            assert Path(item).exists(), item
    assert [s["name"] for s in filled["ingest"]] == ["sim_train", "real"]
    config = load_config(str(registry.model_config_path(filled["train"]["model"]["config"])))
    real = {a: b for a, b in zip(recipe["ingest"][1]["args"][::2], recipe["ingest"][1]["args"][1::2])}
    assert real["--model"] == filled["train"]["model"]["config"]  # the real shards fit the trained model
    assert "--lc-length" not in real and "--grid-size" not in real
    assert config["preprocess"]["lightcurve"]["length"] == config["towers"]["lightcurve"]["max_len"]
    assert config["preprocess"]["spectrum"]["grid"]["size"] == config["towers"]["spectrum"]["length"]
    assert set(filled["bench"]["tasks"]) <= set(registry.tasks)
    assert set(filled["bench"]["options"]) <= set(registry.tasks)
    cfg = load_train_config(base=filled["train"])
    # bounded by steps, never by wall time: the same model (and benchmark numbers) on a slow or a loaded machine
    assert cfg.train.max_time_s is None and cfg.train.max_steps == 400
    assert cfg.data.train == str(tmp_path / "curated_train")  # the curated set
    assert filled["curate"][0]["inputs"] == [str(tmp_path / "sim_train")]
