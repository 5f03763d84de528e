"""The pipeline runner: a recipe end to end (tiny), resume on re-run, and clear failures."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import yaml

from clipzoo.core.cli import main

RECIPE = {
    "name": "mini",
    "ingest": [{"name": "train", "source": "core synthetic", "args": ["--count", "96", "--image-size", "32"]}],
    "train": {
        "model": {"config": {"embed_dim": 16,
                             "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "head_width": 16, "layers": 1},
                             "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}},
        "data": {"train": "${ingest.train}", "batch_size": 16},
        "train": {"max_steps": 4, "checkpoint_every": 2},
        "run": {"mlflow": False, "progress": False},
    },
    "bench": {"tasks": ["core/synthetic-retrieval"], "options": {"core/synthetic-retrieval": {"count": 20, "image_size": 32}}},
}


def test_recipe_runs_resumes_and_reports(tmp_path: Path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    recipe = tmp_path / "mini.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    args = ["pipeline", "run", str(recipe), "--workdir", str(tmp_path / "runs"), "--no-register"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"ingest train +96 samples +0 skipped", out) and re.search(r"train +4 steps", out)
    assert "core/synthetic-retrieval" in out and (tmp_path / "runs/mini/bench.json").is_file()
    # a second run keeps the shards and resumes the finished training instead of starting over
    caplog.clear()
    assert main(args) == 0
    assert "kept existing shards" in caplog.text and "resumed from" in caplog.text

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**RECIPE, "name": "bad", "ingest": [{"name": "x", "source": "core images",
                                                                         "inputs": ["${shared}/nope"]}]}))
    monkeypatch.setenv("CLIPZOO_SHARED_DATA", str(tmp_path / "no-shared"))
    assert main(["pipeline", "run", str(bad), "--workdir", str(tmp_path / "runs"), "--no-register"]) == 1
    assert "set CLIPZOO_SHARED_DATA" in capsys.readouterr().err
    assert main(["pipeline", "run", "no-such-recipe"]) == 2
