"""The benchmark harness end to end: registry versions, cached embeddings, MLflow logging, leaderboard, CLI.

Two versions of a tiny seeded model are registered in a sqlite store under a temporary CLIPZOO_HOME
and benchmarked on core's synthetic-set tasks (small counts), through the Python API and the
`clipzoo bench` / `clipzoo registry` command modules.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
import torch

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "head_width": 16, "layers": 1},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TASKS = ["core/synthetic-shape", "core/synthetic-retrieval"]
SMALL = {t: {"count": 24, "image_size": 32} for t in TASKS}


def clipzoo_main(argv: list[str]) -> int:
    """What the lead's `clipzoo` entry point does with our two command modules."""
    from clipzoo.core.bench import cli as bench_cli
    from clipzoo.core.registry import cli as registry_cli

    parser = argparse.ArgumentParser(prog="clipzoo")
    sub = parser.add_subparsers(dest="command", required=True)
    bench_cli.add_parser(sub)
    registry_cli.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from clipzoo.core.bench import register_core_tasks
    from clipzoo.core.models import create_model, save_pretrained
    from clipzoo.core.plugins import get_registry
    from clipzoo.core.registry import register_model

    registry = get_registry()
    if "core/synthetic-shape" not in registry.tasks:  # until core's builtin.register calls it
        register_core_tasks(registry)
    home = tmp_path_factory.mktemp("home")
    old = {k: os.environ.get(k) for k in ("CLIPZOO_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["CLIPZOO_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    packages = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        packages.append(save_pretrained(create_model(TINY), home / f"pkg{seed}"))
        assert register_model(packages[-1], "bench-tiny", aliases=["candidate"]) == seed + 1
    yield {"home": home, "packages": packages}
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_run_benchmark_logs_caches_and_tags_the_version(store, capsys):
    from clipzoo.core.bench import run_benchmark
    from clipzoo.core.registry import get_client, show_model

    out = store["home"] / "results" / "v1.json"
    results = run_benchmark("models:/bench-tiny/1", TASKS, task_options=SMALL, out=out)
    assert results["name"] == "bench-tiny" and results["version"] == 1
    shape, retrieval = (results["tasks"][t] for t in TASKS)
    assert shape["kind"] == "zeroshot_classification" and shape["primary"] == "top1"
    assert set(shape["metrics"]) == {"top1", "mean_per_class_recall"}  # 4 shapes: no top-5
    assert retrieval["primary"] == "mean_recall"
    assert set(retrieval["metrics"]) == {f"{d}_R{k}" for d in ("image2text", "text2image") for k in (1, 5, 10)} | {"mean_recall"}
    for value in [*shape["metrics"].values(), *retrieval["metrics"].values()]:
        assert 0.0 <= value <= 1.0
    # 24 test pairs: every recall is a multiple of 1/24
    assert all(abs(v * 24 - round(v * 24)) < 1e-9 for k, v in retrieval["metrics"].items() if "_R" in k)
    assert results["cache"]["misses"] == 3 and results["cache"]["hits"] == 0  # shape images, retrieval images, captions
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    table = capsys.readouterr().out
    assert "core/synthetic-shape" in table and "top1 *" in table and "mean_recall *" in table

    # logged to MLflow, and attached to the version
    client = get_client()
    run = client.get_run(results["mlflow_run_id"])
    assert run.data.metrics["core/synthetic-shape/top1"] == pytest.approx(shape["metrics"]["top1"])
    assert run.data.tags["clipzoo.model_version"] == "1"
    info = show_model("models:/bench-tiny/1")
    assert info["headline"]["core/synthetic-retrieval"] == {
        "metric": "mean_recall", "value": pytest.approx(retrieval["metrics"]["mean_recall"]),
        "interval": pytest.approx(retrieval["interval"]["mean_recall"]), "chance": pytest.approx(retrieval["chance"]["mean_recall"]),
        "n_items": 24}
    assert info["benchmarks"]["core/synthetic-shape"]["mean_per_class_recall"] == pytest.approx(shape["metrics"]["mean_per_class_recall"])
    assert info["bench_details"]["core/synthetic-shape"]["fingerprint"] == shape["fingerprint"]
    lo, hi = shape["interval"]["top1"]
    # card re-rendered with items, interval and chance (4 shapes: chance 0.25)
    assert f"| core/synthetic-shape | 24 | top1 | {shape['metrics']['top1']:.4f} | [{lo:.4f}, {hi:.4f}] | 0.2500 |" in info["card"]
    lo, hi = retrieval["interval"]["mean_recall"]
    assert (f"| core/synthetic-retrieval | 24 | mean_recall | {retrieval['metrics']['mean_recall']:.4f} | "
            f"[{lo:.4f}, {hi:.4f}] | {retrieval['chance']['mean_recall']:.4f} |") in info["card"]
    # MLflow run: interval and chance beside each value, fingerprint as a tag
    assert run.data.metrics["core/synthetic-shape/top1_ci_low"] == pytest.approx(shape["interval"]["top1"][0])
    assert run.data.metrics["core/synthetic-shape/top1_ci_high"] == pytest.approx(shape["interval"]["top1"][1])
    assert run.data.metrics["core/synthetic-shape/top1_chance"] == 0.25
    assert run.data.tags["core/synthetic-shape/fingerprint"] == shape["fingerprint"]
    # results: chance by task kind, options resolved with the factory's defaults, 1000 seeded resamples
    assert shape["chance"] == {"top1": 0.25, "mean_per_class_recall": 0.25}
    assert retrieval["chance"]["text2image_R1"] == pytest.approx(1 / 24) and retrieval["chance"]["text2image_R5"] == pytest.approx(5 / 24)
    assert shape["options"] == {"count": 24, "image_size": 32, "seed": 0}
    assert shape["bootstrap"] == {"resamples": 1000, "seed": 0, "level": 0.95} and shape["n_items"] == 24
    for entry in (shape, retrieval):
        for metric, (low, high) in entry["interval"].items():
            assert low <= entry["metrics"][metric] <= high and low < high, (metric, low, high)

    # the same model again: every embedding comes from the cache, same numbers
    again = run_benchmark("models:/bench-tiny/1", TASKS, task_options=SMALL, log=False, print_table=False)
    assert again["cache"] == {**results["cache"], "hits": 3, "misses": 0}
    assert again["tasks"]["core/synthetic-retrieval"]["metrics"] == retrieval["metrics"]
    assert again["tasks"]["core/synthetic-retrieval"]["interval"] == retrieval["interval"]  # same seed, same interval
    other = run_benchmark("models:/bench-tiny/1", TASKS[:1], task_options={TASKS[0]: {**SMALL[TASKS[0]], "bootstrap": 200,
                          "bootstrap_seed": 5}}, log=False, print_table=False)["tasks"][TASKS[0]]
    assert other["bootstrap"] == {"resamples": 200, "seed": 5, "level": 0.95}
    assert other["fingerprint"] == shape["fingerprint"]  # the bootstrap is no part of what the score measures
    assert other["interval"] != shape["interval"]


def test_folder_model_is_not_attached_and_other_weights_miss_the_cache(store):
    from clipzoo.core.bench import run_benchmark

    results = run_benchmark(store["packages"][1], TASKS[:1], task_options=SMALL, log=False, print_table=False)
    assert results["version"] is None and results["mlflow_run_id"] is None
    assert results["cache"]["misses"] == 1  # v2's weights differ from v1's: its own cache entry


def test_cli_bench_promote_and_leaderboard(store, capsys):
    from PIL import Image

    from clipzoo.core.registry import list_models

    assert clipzoo_main(["bench", "models:/bench-tiny@candidate", "--task", *TASKS, "--set", "count=24",
                         "--set", "image_size=32", "--out", str(store["home"] / "v2.json")]) == 0
    v2 = json.loads((store["home"] / "v2.json").read_text())
    assert v2["version"] == 2
    capsys.readouterr()

    scores = {v["version"]: v["headline"] for v in list_models()[0]["versions"]}
    assert set(scores) == {1, 2} and set(scores[2]) == set(TASKS)
    # v1 is champion; v2 may take it only with scores >= v1's on both tasks
    assert clipzoo_main(["registry", "promote", "bench-tiny", "1"]) == 0
    better = all(scores[2][t]["value"] >= scores[1][t]["value"] for t in TASKS)
    assert clipzoo_main(["registry", "promote", "bench-tiny", "2"]) == (0 if better else 1)
    err = capsys.readouterr().err
    assert better or ("refused" in err and "<" in err and "--force" in err)

    md, png = store["home"] / "board.md", store["home"] / "board.png"
    assert clipzoo_main(["registry", "leaderboard", "--markdown", str(md), "--png", str(png)]) == 0
    terminal = capsys.readouterr().out
    # one block per task, every line within 120 columns
    assert "== core/synthetic-retrieval  (headline mean_recall)" in terminal and "== core/synthetic-shape  (headline top1)" in terminal
    assert max(len(line) for line in terminal.splitlines()) <= 120
    # one Markdown table per task; a version's row holds value [interval] per metric, then a chance row
    text = md.read_text()
    assert [line for line in text.splitlines() if line.startswith("### ")] == ["### core/synthetic-retrieval", "### core/synthetic-shape"]
    v2_shape = v2["tasks"]["core/synthetic-shape"]
    lo, hi = v2_shape["interval"]["top1"]
    lines = [line for line in text.split("### core/synthetic-shape")[1].strip().splitlines() if line]
    assert lines[0] == "n=24 items"  # the test items are a fact about the task, beside its name, not a column
    assert lines[1] == "| model | version | aliases | data | top1 * | mean_per_class_recall |"
    assert lines[3].startswith(f"| bench-tiny | 2 | candidate{',champion' if better else ''} | {v2_shape['fingerprint'][:8]} | "
                               f"{v2_shape['metrics']['top1']:.4f} [{lo:.4f}, {hi:.4f}] |")
    assert lines[4].startswith(f"| bench-tiny | 1 | {'-' if better else 'champion'} | ")
    assert lines[5] == "| chance |  |  |  | 0.2500 | 0.2500 |"
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] >= 600

    assert clipzoo_main(["registry", "list"]) == 0
    assert "v2 @candidate" in capsys.readouterr().out
    assert clipzoo_main(["registry", "show", "bench-tiny/1"]) == 0
    assert "# bench-tiny (version 1)" in capsys.readouterr().out


def test_cli_bad_input_is_one_clear_line(store, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    cases = [
        (["bench", "models:/nope@champion", "--task", TASKS[0]], "no registered model 'nope' in sqlite:///", "registered: bench-tiny"),
        (["bench", "models:/bench-tiny/7", "--task", TASKS[0]], "has no version 7", "versions: 1, 2"),
        (["bench", "models:/bench-tiny/1", "--task", "core/no-such-task"], "unknown benchmark task 'core/no-such-task'",
         "core/csv-zeroshot, core/imagefolder-linear-probe, core/imagefolder-zeroshot, core/shards-retrieval"),
        (["bench", "models:/bench-tiny/1", "--task", "core/imagefolder-zeroshot", "--set", f"root={empty}"],
         f"image folder {empty} holds no images", "found: cats; loose files: notes.txt"),
        (["bench", "models:/bench-tiny/1", "--task", TASKS[0], "--bootstrap", "0"],
         "bootstrap=0: the number of resamples must be at least 1", "1000 is usual"),
        (["registry", "show", "models:/bench-tiny@nope"], "has no alias 'nope'", "aliases: candidate"),
        (["registry", "register", str(tmp_path), "--name", "x"], f"{tmp_path} is not a model package", "no config.json, model.safetensors"),
    ]
    for argv, what, instead in cases:
        assert clipzoo_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert what in err and instead in err, err
    assert clipzoo_main(["bench", "--list-tasks"]) == 0
    listing = capsys.readouterr().out
    assert "core/synthetic-retrieval" in listing and "Caption <-> image retrieval" in listing
    # a new, unbenchmarked version cannot take the champion alias: registered, alias refused, exit 1
    assert clipzoo_main(["registry", "register", str(store["packages"][0]), "--name", "bench-tiny", "--alias", "champion"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "registered bench-tiny version 3"
    assert "refused: refusing to move 'champion' of 'bench-tiny' from version" in err and "no benchmark in common" in err


def test_nmodal_tasks_on_arrays(tmp_path):
    """Tri-modal retrieval and classification on arrays (an astro-like model: light curve, spectrum, metadata)."""
    from clipzoo.core.bench.cache import Embedder
    from clipzoo.core.bench.datasets import array_dataset
    from clipzoo.core.bench.tasks import NModalClassification, NModalRetrieval
    from clipzoo.core.models import create_model, save_pretrained
    from clipzoo.core.models import LoadedModel

    config = {"embed_dim": 16, "towers": {
        "lightcurve": {"type": "sequence_transformer", "in_channels": 2, "width": 16, "layers": 1, "heads": 2, "max_len": 20},
        "spectrum": {"type": "conv1d", "in_channels": 1, "width": 16, "length": 24},
        "metadata": {"type": "mlp", "in_features": 5, "hidden": [16]}}}
    torch.manual_seed(0)
    loaded = LoadedModel.from_package(save_pretrained(create_model(config), tmp_path / "astro"), device="cpu")
    rng = np.random.default_rng(0)
    n = 30
    labels = np.arange(n) % 3
    arrays = {"lightcurve": rng.normal(size=(n, 20, 2)).astype(np.float32) + labels[:, None, None],
              "spectrum": rng.normal(size=(n, 24, 1)).astype(np.float32) - labels[:, None, None],
              "metadata": rng.normal(size=(n, 5)).astype(np.float32) + labels[:, None]}
    masks = {"spectrum": np.ones((n, 24), dtype=bool)}
    masks["spectrum"][:6] = False  # six objects without a spectrum
    data = array_dataset(arrays, masks=masks, labels=labels, classnames=["a", "b", "c"])
    embedder = Embedder(loaded, tmp_path / "cache")
    got = NModalRetrieval(dataset=data, modalities=["lightcurve", "spectrum", "metadata"]).evaluate(embedder)
    assert not any(k.endswith("_pairs") for k in got)  # counts are no metrics
    assert {"lightcurve2spectrum_R1", "spectrum2lightcurve_R10", "metadata2spectrum_R5"} <= set(got)
    assert got["mean_recall"] == pytest.approx(np.mean([v for k, v in got.items() if "_R" in k]))
    cls = NModalClassification(train=data, test=data, modalities=["lightcurve", "spectrum", "metadata"]).evaluate(embedder)
    assert {"lightcurve_top1", "spectrum_top1", "metadata_top1", "fused_top1", "fused_mean_per_class_recall"} <= set(cls)
    assert cls["fused_top1"] > 1 / 3  # separable classes, scored on the training set itself
    assert embedder.misses == 3 and embedder.hits == 6  # each modality embedded once; train and test re-read it
    # per-item scores: a pair is scored on the objects that have both modalities, chance from its own count
    scores = NModalRetrieval(dataset=data, modalities=["lightcurve", "spectrum", "metadata"]).score(embedder)
    assert scores.n_items == 30 and scores.values() == got
    assert scores.chance["lightcurve2spectrum_R1"] == pytest.approx(1 / 24) and scores.chance["lightcurve2metadata_R5"] == pytest.approx(5 / 30)
    assert scores.counts == {"lightcurve_spectrum_pairs": 24, "lightcurve_metadata_pairs": 30, "spectrum_metadata_pairs": 24}
    assert not any(k.endswith("_pairs") for k in [*scores.order, *scores.chance, *scores.info])
    num, den = scores.ratios["spectrum2metadata_R1"]
    assert den[:6].sum() == 0 and den[6:].sum() == 24  # the six objects without a spectrum are not queries
    fused = NModalClassification(train=data, test=data, modalities=["lightcurve", "spectrum", "metadata"]).score(embedder)
    assert fused.values() == cls and fused.chance["fused_top1"] == pytest.approx(1 / 3)
    assert fused.balanced["spectrum_mean_per_class_recall"][1][:6].tolist() == [-1] * 6  # not scored: no spectrum


def test_leaderboard_blocks_fit_120_columns_and_one_panel_per_task():
    """Many metrics with intervals wrap into sub-blocks of at most 120 columns; the PNG has one panel per task."""
    from clipzoo.core.registry.leaderboard import Leaderboard

    board = Leaderboard(tasks={"astro/plasticc-retrieval": "mean_recall", "biomed/zeroshot": "top1", "core/synthetic-shape": "top1"})
    metrics = {f"{a}2{b}_R{k}": 0.1 * k for a, b in (("lightcurve", "spectrum"), ("spectrum", "metadata")) for k in (1, 5, 10)}
    metrics["mean_recall"] = 0.4
    results = {
        "astro/plasticc-retrieval": {"metrics": metrics, "interval": {m: [v - 0.05, v + 0.05] for m, v in metrics.items()},
                                     "chance": {m: 0.01 for m in metrics}, "n_items": 400, "fingerprint": "a" * 16},
        "biomed/zeroshot": {"metrics": {"top1": 0.5}, "interval": {"top1": [0.0, 1.0]}, "chance": {"top1": 0.5},
                            "n_items": 2, "fingerprint": "b" * 16},
        "core/synthetic-shape": {"metrics": {"top1": 0.9, "mean_per_class_recall": 0.88},
                                 "interval": {"top1": [0.85, 0.94], "mean_per_class_recall": [0.83, 0.92]},
                                 "chance": {"top1": 0.25, "mean_per_class_recall": 0.25}, "n_items": 200, "fingerprint": "c" * 16},
    }
    for version in (3, 2, 1):
        board.rows.append({"model": "a-registered-model-with-a-very-long-name", "version": version, "aliases": ["champion"] if version == 1 else [],
                           "scores": {}, "results": results if version != 2 else {"core/synthetic-shape": results["core/synthetic-shape"]}})
    text = board.to_terminal()
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120
    assert [line for line in lines if line.startswith("== ")] == [
        "== astro/plasticc-retrieval  (headline mean_recall)  n=400 items", "== biomed/zeroshot  (headline top1)  n=2 items",
        "== core/synthetic-shape  (headline top1)  n=200 items"]
    astro = text.split("== astro/plasticc-retrieval")[1].split("==")[0]
    assert astro.count("model ") >= 3  # 7 metric columns of 'value [low, high]' need three sub-blocks
    assert "0.4000 [0.3500, 0.4500]" in astro and "v2" not in astro
    assert "too few items [0.0000, 1.0000]" in text  # 2 test items
    assert [line.split()[0] for line in astro.splitlines() if line.startswith("chance")] == ["chance"] * astro.count("model ")
    md = board.to_markdown()
    assert md.count("### ") == 3 and md.count("| chance |") == 3
    fig = board.figure()
    try:
        assert len(fig.axes) == 3
        assert [ax.get_title() for ax in fig.axes] == [f"{t} ({m})" for t, m in board.tasks.items()]
        chance_lines = [ln for ln in fig.axes[2].get_lines() if ln.get_linestyle() == "--"]
        assert len(chance_lines) == 1 and list(chance_lines[0].get_xdata()) == [0.25, 0.25]
        assert len(fig.axes[2].get_yticklabels()) == 3 and len(fig.axes[0].get_yticklabels()) == 2
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_pipeline_results_show_interval_chance_and_too_few():
    from pathlib import Path

    from clipzoo.core.pipeline import PipelineResult, format_results

    ok = {"primary": "top1", "metrics": {"top1": 0.62}, "interval": {"top1": [0.55, 0.69]}, "chance": {"top1": 0.25},
          "n_items": 200}
    tiny = {"primary": "top1", "metrics": {"top1": 0.5}, "interval": {"top1": [0.0, 1.0]}, "chance": {"top1": 0.5}, "n_items": 2}
    text = format_results([PipelineResult(name="demo", workdir=Path("runs/demo"), bench={"core/a": ok, "biomed/zeroshot": tiny})])
    assert "core/a" in text and "top1             0.6200 [0.5500, 0.6900]  chance 0.2500  (200 items)" in text
    assert "top1             too few items to measure [0.0000, 1.0000]  chance 0.5000  (2 items)" in text


def test_registered_count_is_task_detail_not_a_leaderboard_column(store):
    """Issue 15: a chip<->location-like result (core's NModalRetrieval, whose pair count the RS leaderboard showed as
    a metric column) goes through the harness and the registry tags; the board shows the count as n=..., no column."""
    from clipzoo.core.bench.cache import Embedder
    from clipzoo.core.bench.core_tasks import synthetic_dataset
    from clipzoo.core.bench.harness import bench_details, format_table, score_task
    from clipzoo.core.bench.tasks import NModalRetrieval
    from clipzoo.core.models import LoadedModel
    from clipzoo.core.registry import register_model, store as mlflow_store
    from clipzoo.core.registry.client import attach_benchmark
    from clipzoo.core.registry.leaderboard import collect

    task = "remote_sensing/like-chip-location"
    assert register_model(store["packages"][0], "rs-like") == 1
    try:
        loaded = LoadedModel.from_package(store["packages"][0], device="cpu")
        dataset = synthetic_dataset("test", 24, 0, 32)
        entry = score_task(NModalRetrieval(dataset=dataset, modalities=("image", "text")), Embedder(loaded, store["home"] / "c"),
                           resamples=50)
        entry["fingerprint"], entry["options"] = "f" * 16, {}
        assert entry["counts"] == {"image_text_pairs": 24} and "image_text_pairs" not in entry["metrics"]
        assert "  x: 24 image_text_pairs" in format_table({"model": "m", "weights_sha256": "0" * 12, "tasks": {"x": entry}})
        attach_benchmark("rs-like", 1, {task: entry["metrics"]}, {task: entry["primary"]}, details={task: bench_details(entry)})
        board = collect(name="rs-like")
        assert board.metrics(task)[0] == "mean_recall" and "image_text_pairs" not in board.metrics(task)
        terminal = board.to_terminal()
        assert f"== {task}  (headline mean_recall)  n=24 items, 24 image_text_pairs" in terminal
        header = next(line for line in terminal.splitlines() if line.startswith("model "))
        assert "pairs" not in header and "items" not in header.split()
        assert "n=24 items, 24 image_text_pairs" in board.to_markdown()
    finally:  # the module's other tests see only bench-tiny
        mlflow_store.get_client().delete_registered_model("rs-like")


def test_a_metric_resting_on_few_items_of_a_large_task_reads_too_few():
    """The "too few items" rule counts the items a metric rests on, not the task's items: a pair recall scored on
    5 of 40 items (the others have no pair: denominator 0) is not printed as a measured value, even when its
    bootstrap interval happens to be narrow; a metric scored on all 40 is."""
    from clipzoo.core.bench.metrics import ItemScores
    from clipzoo.core.bench.table import TOO_FEW, format_value

    scores = ItemScores(40)
    den = np.zeros(40)
    den[:5] = 1
    scores.add_ratio("pair_r1", den.copy(), den, 0.2, "1 of 5 candidates")
    scores.add_ratio("top1", np.ones(40), np.ones(40), 0.25, "1 of 4 classes")
    scores.add_average("mean", ["pair_r1", "top1"])
    assert {m: scores.support(m) for m in scores.measured} == {"pair_r1": 5, "top1": 40, "mean": 5}
    entry = {"metrics": scores.values(), "n_items": 40, "support": {m: scores.support(m) for m in scores.measured},
             "interval": {"pair_r1": [1.0, 1.0], "top1": [1.0, 1.0], "mean": [1.0, 1.0]}, "chance": scores.chance}
    assert format_value(entry, "pair_r1")[0] == TOO_FEW and format_value(entry, "mean")[0] == TOO_FEW
    assert format_value(entry, "top1")[0] == "1.0000"
    assert format_value({**entry, "support": None}, "pair_r1")[0] == "1.0000"  # results from before supports


def test_a_metrics_support_travels_through_the_registry_tags():
    """The leaderboard and the card read results back from version tags: the support must survive that trip, or
    a registered pair recall on 5 of 40 items would read as measured again."""
    from clipzoo.core.bench.table import TOO_FEW, format_value
    from clipzoo.core.registry.client import bench_tags, read_bench_tags

    detail = {"n_items": 40, "support": {"pair_r1": 5}, "interval": {"pair_r1": [1.0, 1.0]}, "chance": {"pair_r1": 0.2}}
    back = read_bench_tags(bench_tags({"t": {"pair_r1": 1.0}}, {"t": "pair_r1"}, {"t": detail}))["t"]
    assert back["support"] == {"pair_r1": 5} and format_value(back, "pair_r1")[0] == TOO_FEW
