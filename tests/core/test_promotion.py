"""Fair promotion (issue 11.6): a score counts against the champion's only when both measured the same thing.

The issue's scenario, through the real commands on a sqlite store: v1 is champion on
``core/synthetic-retrieval`` scored on 24 test pairs; v2, re-benchmarked with ``--set count=2`` (where
recall@5 is 1 for any model), scores far higher, and must still be refused without ``--force``, in one
line naming the option that differs. Scored on the same 24 pairs, the decision is made on the values and
says where the candidate lies against the champion's 95% interval.
"""

from __future__ import annotations

import argparse
import os

import pytest
import torch

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "head_width": 16, "layers": 1},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TASK = "core/synthetic-retrieval"


def clipzoo(argv: list[str]) -> int:
    from clipzoo.core.bench import cli as bench_cli
    from clipzoo.core.registry import cli as registry_cli

    parser = argparse.ArgumentParser(prog="clipzoo")
    sub = parser.add_subparsers(dest="command", required=True)
    bench_cli.add_parser(sub)
    registry_cli.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture()
def versions(tmp_path, monkeypatch):
    from clipzoo.core.bench import register_core_tasks
    from clipzoo.core.models import create_model, save_pretrained
    from clipzoo.core.plugins import get_registry
    from clipzoo.core.registry import register_model

    if TASK not in get_registry().tasks:
        register_core_tasks(get_registry())
    monkeypatch.setenv("CLIPZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for seed in (0, 1):
        torch.manual_seed(seed)
        register_model(save_pretrained(create_model(TINY), tmp_path / f"pkg{seed}"), "fair")
    return tmp_path


@pytest.mark.slow
def test_a_score_on_other_options_never_promotes(versions, capsys):
    from clipzoo.core.registry import show_model

    common = ["--set", "image_size=32", "--bootstrap", "200", "--cache-dir", str(versions / "cache")]
    assert clipzoo(["bench", "models:/fair/1", "--task", TASK, "--set", "count=24", *common]) == 0
    assert clipzoo(["registry", "promote", "fair", "1"]) == 0
    champion = show_model("models:/fair/1")["headline"][TASK]

    # v2 benchmarked on 2 pairs: a much higher number that measures something else
    assert clipzoo(["bench", "models:/fair/2", "--task", TASK, "--set", "count=2", *common]) == 0
    easy = show_model("models:/fair/2")["headline"][TASK]
    assert easy["value"] > champion["value"] and easy["n_items"] == 2
    capsys.readouterr()
    assert clipzoo(["registry", "promote", "fair", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{TASK}: scored on different data or options" in err and "count 2 vs 24" in err and "--force" in err
    assert show_model("models:/fair@champion")["version"] == 1

    # the printed table says 2 pairs cannot support a number
    assert clipzoo(["bench", "models:/fair/2", "--task", TASK, "--set", "count=2", "--no-log", *common]) == 0
    table = capsys.readouterr().out
    assert "mean_recall *" in table and "too few items to measure" in table

    # on the same 24 pairs the values decide, and the decision places v2 against v1's interval
    assert clipzoo(["bench", "models:/fair/2", "--task", TASK, "--set", "count=24", *common]) == 0
    fair = show_model("models:/fair/2")["headline"][TASK]
    capsys.readouterr()
    code = clipzoo(["registry", "promote", "fair", "2"])
    out, err = capsys.readouterr()
    low, high = champion["interval"]
    assert f"its 95% interval [{low:.4f}, {high:.4f}]" in out + err
    assert code == (0 if fair["value"] >= champion["value"] else 1)

    # v2 re-scored on 2 pairs again: whichever holds the alias, the other cannot take it; --force can, and says so
    assert clipzoo(["bench", "models:/fair/2", "--task", TASK, "--set", "count=2", *common]) == 0
    candidate = 1 if code == 0 else 2
    assert clipzoo(["registry", "promote", "fair", str(candidate)]) == 1
    assert clipzoo(["registry", "promote", "fair", str(candidate), "--force", "--reason", "test"]) == 0
    assert "different data or options" in show_model(f"models:/fair/{candidate}")["tags"]["promotion_override/champion"]
