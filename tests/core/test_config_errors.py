"""A bad config value, shard folder or model folder is one line on stderr, exit 2, and nothing written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from clipzoo.core.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_train import _base, shards  # noqa: E402,F401  (the module-scoped shard fixture)


def _config(tmp_path: Path, shards: Path, out: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_base(shards, out, train={"max_steps": 2, "checkpoint_every": 10})))
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("--train.max_steps=abc", ["train.max_steps='abc'", "integer"]),
        ("--optim.lr=fast", ["optim.lr='fast'", "number"]),
        ("--data.batch_size=0", ["data.batch_size=0", "greater than or equal to 1"]),
        ("--train.backend=tensorflow", ["train.backend='tensorflow'", "'torch' or 'deepspeed'"]),
        ("--data.split=rows", ["data.split='rows'", "'shards', 'samples' or 'auto'"]),
        ("--data.on_bad_shard=ignore", ["data.on_bad_shard='ignore'", "'stop' or 'skip'"]),
        ("--optim.lrr=1", ["unknown key optim.lrr", "lr, weight_decay"]),
        ("--data.train=", ["data.train is empty"]),
        ("--data.train={missing}", ["data.train=", "missing"]),
    ],
)
def test_bad_value_is_one_line_exit_2_and_writes_nothing(tmp_path, shards, capsys, override, expected):
    out = tmp_path / "run"
    override = override.format(missing=tmp_path / "missing")
    assert main(["train", str(_config(tmp_path, shards, out)), override]) == 2
    line = _one_error_line(capsys)
    for part in expected:
        assert part in line, line
    assert not out.exists(), f"a run that refused to start wrote {sorted(out.rglob('*'))}"


def test_existing_run_config_is_never_overwritten(tmp_path, shards, capsys):
    out = tmp_path / "run"
    cfg = _config(tmp_path, shards, out)
    assert main(["train", str(cfg)]) == 0
    saved = (out / "config.json").read_bytes()
    for override in ("--train.max_steps=5", "--optim.lr=fast"):
        capsys.readouterr()
        assert main(["train", str(cfg), override]) == 2
        line = _one_error_line(capsys)
        assert (out / "config.json").read_bytes() == saved, override
    assert "train.max_steps: 2 in the run, 5 now" not in line  # the last one is the bad value itself
    assert main(["train", str(cfg)]) == 0  # the same config resumes (nothing left to do: already at step 2)


def test_resume_with_another_config_names_the_difference(tmp_path, shards, capsys):
    out = tmp_path / "run"
    cfg = _config(tmp_path, shards, out)
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["train", str(cfg), "--train.max_steps=5"]) == 2
    line = _one_error_line(capsys)
    assert "train.max_steps: 2 in the run, 5 now" in line and "new run.output_dir" in line


def test_model_folder_with_broken_config_json_names_the_file(tmp_path, capsys):
    from clipzoo.core.models import create_model, save_pretrained

    folder = save_pretrained(create_model("clipzoo-tiny-32"), tmp_path / "model")
    (folder / "config.json").write_text('{"model": {"embed_dim": 32,', encoding="utf-8")
    assert main(["bench", str(folder), "--task", "core/synthetic-retrieval", "--no-log",
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(folder / "config.json") in err and "not valid JSON" in err
