"""The biomed recipe (shipped in clipzoo.biomed) is consistent with what the biomed plugin registers (the full run is the demo, ~60 s)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from clipzoo.core.pipeline import find_recipe



@pytest.fixture(scope="module")
def recipe():
    return yaml.safe_load(find_recipe("biomed").read_text(encoding="utf-8"))


def test_ingest_steps_parse_with_their_sources(recipe, shared_data):
    from clipzoo.biomed.plugin import register
    from clipzoo.core.plugins import PluginRegistry

    registry = PluginRegistry()
    register(registry)
    names = []
    for step in recipe["ingest"]:
        domain, source = step["source"].split()
        cls = registry.source(domain, source)
        parser = argparse.ArgumentParser()
        cls.add_arguments(parser)
        args = [str(a) for a in step.get("args", [])]
        options = parser.parse_args(args)
        cls(options)  # options accepted (IngestError otherwise)
        for flag, value in zip(args, args[1:] + [""]):  # each value given reaches the source's options
            if flag.startswith("--") and value and not value.startswith("--"):
                assert str(getattr(options, flag[2:].replace("-", "_"))) == value, (step["name"], flag)
        for item in step["inputs"]:
            assert Path(item.replace("${shared}", str(shared_data))).exists(), item
        names.append(step["name"])
    assert names == ["figures", "dicom", "mri", "ct", "modalities"]
    from clipzoo.biomed.plugin import CONFIG_DIR

    config = recipe["train"]["model"]["config"]
    assert registry.model_config_path(config) == CONFIG_DIR / f"{config}.json"  # the package's own file
    assert registry.model_config_path("no-such-config") is None
    assert set(recipe["bench"]["tasks"]) <= set(registry.tasks)
    trained_on = recipe["train"]["data"]["train"] + [i for c in recipe.get("curate", []) for i in c["inputs"]]
    assert "${ingest.modalities}" not in trained_on  # held out for the zero-shot benchmark


def test_train_section_is_a_valid_bounded_trainer_config(recipe, tmp_path):
    from clipzoo.core.train import load_config

    def fill(value):  # ${ingest.NAME} -> a shard folder path, as the pipeline runner does
        if isinstance(value, str):
            return re.sub(r"\$\{(?:ingest|curate)\.([a-z]+)\}", lambda m: str(tmp_path / m.group(1)), value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    train = fill(recipe["train"])
    assert train["data"]["train"] == [str(tmp_path / recipe["curate"][0]["name"])]  # trains on the curated set
    cfg = load_config(base=train)
    # bounded by steps, never by wall time: the same model (and benchmark numbers) on a slow or a loaded machine
    assert cfg.train.max_time_s is None and cfg.train.max_steps == 150

