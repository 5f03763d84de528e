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


def test_rerun_resumes_an_interrupted_curate_step(tmp_path: Path, caplog, monkeypatch):
    """A pipeline's curate step killed after its units were written (before the manifest, its commit record) is
    finished on the next run, as an ingest step is: the written units are kept, not curated again from scratch."""
    import os

    from clipzoo.core.data import writer
    from clipzoo.core.pipeline import _run_curate_step

    shards = tmp_path / "shards" / "train"
    assert main(["ingest", "core", "synthetic", "--count", "40", "--image-size", "16", "--shard-size", "20",
                 "--out", str(shards)]) == 0
    step = {"name": "train", "inputs": [str(shards)], "steps": [{"dedup": {"by": ["pixels"]}}]}
    out = tmp_path / "shards" / "curated_train"
    write = writer.atomic_write_text

    def killed_at_commit(path, text, *args, **kwargs):
        if Path(path).name == writer.MANIFEST_NAME:
            raise KeyboardInterrupt("killed before the manifest")
        return write(path, text, *args, **kwargs)

    monkeypatch.setattr(writer, "atomic_write_text", killed_at_commit)
    try:
        _run_curate_step(step, out)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(writer, "atomic_write_text", write)
    written = sorted(out.glob("curated-u*.tar"))
    assert len(written) == 2 and not (out / writer.MANIFEST_NAME).exists() and (out / ".units").is_dir()
    os.utime(written[0], ns=(10**18, 10**18))  # a mark that a rewrite would not keep
    caplog.clear()
    caplog.set_level(logging.INFO)
    again = _run_curate_step(step, out)
    assert again["in"] == again["out"] == 40 and (out / writer.MANIFEST_NAME).is_file()
    assert "2 of 2 units already written, 0 to write" in caplog.text
    assert written[0].stat().st_mtime_ns == 10**18


def test_an_ingest_step_killed_before_it_planned_is_written_anew(tmp_path: Path, caplog):
    """An ingest step's output holding leftovers but no plan record (killed while it held the lock, before planning)
    is replaced on the next run, as a curate step's is; it used to be 'resumed', which refuses such a folder."""
    from clipzoo.core.data.writer import Manifest
    from clipzoo.core.pipeline import _run_ingest_step

    out = tmp_path / "shards" / "train"
    out.mkdir(parents=True)
    (out / "shard-u00000-000000.tar.partial").write_bytes(b"half a shard")
    step = {"name": "train", "source": "core synthetic", "args": ["--count", "12", "--image-size", "16"]}
    _run_ingest_step(step, out)
    assert Manifest.load(out).num_samples == 12 and not list(out.glob("*.partial"))
