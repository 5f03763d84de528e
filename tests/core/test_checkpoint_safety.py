"""Checkpoints are untrusted on resume: a damaged newest checkpoint falls back to the one before it, and no
checkpoint file can run code (every load is ``weights_only=True``, DeepSpeed's own files included)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from clipzoo.core.cli import main
from clipzoo.core.train import load_config, train
from clipzoo.core.train.checkpoint import INDEX_NAME, write_index

sys.path.insert(0, str(Path(__file__).parent))
from test_train import _base, _weights, shards  # noqa: E402,F401  (the module-scoped shard fixture)


class _Planted:
    """Unpickling this runs code: it writes the marker file (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _plant(path: Path, marker: Path) -> None:
    """Replace a checkpoint file by a pickle that runs code, and re-index the folder so the sizes and hashes
    match: the index is not a signature, whoever can write the folder can rewrite it too."""
    torch.save({"model": _Planted(marker), "rng": _Planted(marker)}, path)
    folder = next(p for p in path.parents if p.name.startswith("step-"))
    write_index(folder)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "checkpoint" in r.getMessage()]


def _cfg(shards: Path, out: Path):
    return load_config(base=_base(shards, out, train={"max_steps": 8, "checkpoint_every": 3, "keep_last": 3}))


@pytest.mark.parametrize("damage", ["truncate", "delete-index"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous(shards: Path, tmp_path: Path, caplog, damage: str):
    cfg = _cfg(shards, tmp_path / "run")
    assert train(cfg, stop_after_steps=6).steps == 6
    step6 = tmp_path / "run" / "checkpoints" / "step-00000006"
    assert (step6 / INDEX_NAME).is_file()
    if damage == "truncate":
        state = step6 / "training_state.pt"
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    else:
        (step6 / INDEX_NAME).unlink()

    with caplog.at_level(logging.WARNING):
        resumed = train(cfg)
    assert resumed.resumed_from == 3 and resumed.steps == 8
    warned = _warnings(caplog)
    assert len(warned) == 1, warned
    bad = "training_state.pt has" if damage == "truncate" else f"{INDEX_NAME} is missing"
    assert "step-00000006" in warned[0] and bad in warned[0]
    # the fallback resumed exactly: same weights as a run that was never interrupted
    straight = train(_cfg(shards, tmp_path / "straight"))
    a, b = _weights(straight.model_dir), _weights(resumed.model_dir)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # the damaged folder was replaced by the resumed run's own step 6: later restarts start clean
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = train(cfg)
    assert again.resumed_from == 8 and not _warnings(caplog)


def test_no_whole_checkpoint_is_one_line_exit_2(shards: Path, tmp_path: Path, capsys):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(_base(shards, tmp_path / "run", train={"max_steps": 4, "checkpoint_every": 10})))
    assert main(["train", str(cfg_path)]) == 0  # one checkpoint: the final one, step 4
    (tmp_path / "run" / "checkpoints" / "step-00000004" / "rank0.pt").write_bytes(b"\0" * 10)
    capsys.readouterr()
    assert main(["train", str(cfg_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no whole checkpoint in ") and "rank0.pt" in err[0], err


@pytest.mark.parametrize("target", ["rank0.pt", "training_state.pt"])
def test_a_checkpoint_that_would_run_code_is_refused(shards: Path, tmp_path: Path, caplog, target: str):
    cfg = _cfg(shards, tmp_path / "run")
    train(cfg, stop_after_steps=6)
    marker = tmp_path / "marker"
    _plant(tmp_path / "run" / "checkpoints" / "step-00000006" / target, marker)
    with caplog.at_level(logging.WARNING):
        resumed = train(cfg)
    assert not marker.exists(), "a checkpoint file ran code on resume"
    assert resumed.resumed_from == 3
    warned = _warnings(caplog)
    assert len(warned) == 1 and target in warned[0] and "refused to unpickle" in warned[0], warned


@pytest.mark.slow
def test_deepspeed_checkpoint_that_would_run_code_is_refused(shards: Path, tmp_path: Path):
    """DeepSpeed reads its own files with weights_only=False; the backend swaps in a weights_only loader.
    One process, ZeRO-2, on the CPU (DeepSpeed's first start compiles a comm op, cached after)."""
    cfg = _base(shards, tmp_path / "run", train={"max_steps": 4, "checkpoint_every": 2, "keep_last": 3,
                                                   "backend": "deepspeed", "zero_stage": 2})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's ninja
    cmd = [sys.executable, "-m", "clipzoo.core.train", str(path)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    assert first.returncode == 0, first.stderr[-3000:]
    step4 = tmp_path / "run" / "checkpoints" / "step-00000004"
    states = list((step4 / "deepspeed").glob("*model_states.pt"))
    assert len(states) == 1, sorted(p.name for p in (step4 / "deepspeed").iterdir())
    marker = tmp_path / "marker"
    _plant(states[0], marker)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    assert second.returncode == 0, second.stderr[-3000:]
    assert not marker.exists(), "DeepSpeed's checkpoint file ran code on resume"
    skipped = [ln for ln in second.stderr.splitlines() if "skipping checkpoint" in ln]
    assert len(skipped) == 1 and states[0].name in skipped[0] and "refused to unpickle" in skipped[0], skipped
    assert f"resumed from {step4.parent / 'step-00000002'}" in second.stderr
    summary = json.loads((tmp_path / "run" / "model" / "train_summary.json").read_text())
    assert summary["steps"] == 4
