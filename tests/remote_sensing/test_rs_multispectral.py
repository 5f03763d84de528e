"""The multispectral proof: on simulated scenes whose classes twin in RGB, a 4-band model beats the same model fed
RGB only, by more than both bootstrap intervals (issue 15.3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipzoo.remote_sensing import simulate

CONFIGS = Path(simulate.__file__).parent / "configs"


def test_rgb_set_is_the_four_band_set_without_nir():
    four = list(simulate.simulate(12, seed=3, size=8))
    rgb = list(simulate.simulate(12, seed=3, size=8, bands="rgb"))
    assert [lab for _, lab, _ in four] == [i % 6 for i in range(12)]
    for (a, la, ca), (b, lb, cb) in zip(four, rgb):
        assert a.shape == (4, 8, 8) and b.shape == (3, 8, 8) and a.dtype == np.float32
        np.testing.assert_array_equal(a[:3], b)
        assert (la, ca) == (lb, cb) and simulate.CLASSNAMES[la] in ca
    nir_first = [s[0] for s in simulate.simulate(6, seed=3, size=8, bands="nir,red")]
    np.testing.assert_array_equal(nir_first[0][0], four[0][0][3])
    with pytest.raises(ValueError, match="unknown simulated band"):
        simulate.band_indexes("red,swir1")


def test_twins_agree_in_rgb_and_part_in_nir():
    """Per class mean reflectance over many scenes: twins within 0.01 in every visible band, apart in NIR by more
    than the spread of scene means; each class's NIR mean inside its declared range (illumination aside)."""
    scenes = list(simulate.simulate(1200, seed=5, size=8))
    means = np.stack([img.mean(axis=(1, 2)) for img, _, _ in scenes])
    labels = np.array([lab for _, lab, _ in scenes])
    by_class = np.stack([means[labels == c].mean(axis=0) for c in range(6)])
    for a, b in ((0, 1), (2, 3), (4, 5)):
        assert np.abs(by_class[a, :3] - by_class[b, :3]).max() < 0.01
        assert abs(by_class[a, 3] - by_class[b, 3]) > 0.05
    for c, cover in enumerate(simulate.COVERS):
        assert cover.nir[0] - 0.01 <= by_class[c, 3] <= cover.nir[1] + 0.01


def test_sim_configs_declare_the_simulated_sensor_statistics():
    stats = simulate.band_statistics()
    for name, bands in (("rs-sim-tiny", simulate.BANDS), ("rs-sim-rgb-tiny", simulate.BANDS[:3])):
        image = json.loads((CONFIGS / f"{name}.json").read_text())["preprocess"]["image"]
        assert image["bands"] == list(bands)
        np.testing.assert_allclose(image["mean"], [stats[b][0] for b in bands], atol=2e-4)
        np.testing.assert_allclose(image["std"], [stats[b][1] for b in bands], atol=2e-4)


def test_rgbn_configs_name_their_bands_and_take_rgb_weights(tmp_path):
    """The shipped 4-band configs declare R,G,B,NIR; RGB weights of the same shape keep their RGB kernels and
    the RGB model's (OpenAI) mean/std for R,G,B, and NIR takes the config's declared mean/std."""
    import torch

    from clipzoo.core.models import create_model, load_config, save_pretrained
    from clipzoo.core.models.factory import OPENAI_MEAN, OPENAI_STD

    for name in ("rs-rgbn-tiny", "rs-satclip-tiny", "rs-sim-tiny"):
        assert create_model(name).preprocess["image"]["bands"] == list(simulate.BANDS)
    config = load_config("rs-rgbn-tiny")
    rgb_config = {**config, "vision_cfg": {**config["vision_cfg"], "in_channels": 3}, "preprocess": {},
                  "preprocess_cfg": {}}
    rgb = create_model(rgb_config)
    folder = save_pretrained(rgb, tmp_path / "rgb")
    rgbn = create_model("rs-rgbn-tiny", pretrained=folder)
    pre = rgbn.preprocess["image"]
    assert pre["mean"] == [*OPENAI_MEAN, 0.5] and pre["std"] == [*OPENAI_STD, 0.25]
    assert pre["band_adaptation"]["mean_std_from"]["nir"] == "model config"
    kernel = rgbn.towers["image"].conv1.weight.detach()
    rgb_kernel = rgb.towers["image"].conv1.weight.detach()
    assert torch.equal(kernel[:, :3], rgb_kernel) and torch.allclose(kernel[:, 3], rgb_kernel.mean(dim=1))


def _train(tmp: Path, bands: str, config: str, steps: int) -> Path:
    from clipzoo.core.ingest import run_ingest
    from clipzoo.core.train import load_config, train
    from clipzoo.remote_sensing.sources import SimulatedScenesSource

    shards = tmp / f"shards-{bands}"
    opts = SimulatedScenesSource.default_options(bands=bands, count=1200, seed=0)
    assert run_ingest(SimulatedScenesSource(opts), [], shards, progress=False)["samples_written"] == 1200
    res = train(load_config(base={
        "run": {"output_dir": str(tmp / f"train-{bands}"), "mlflow": False, "progress": False, "seed": 0},
        "model": {"config": config},
        "data": {"train": str(shards), "batch_size": 64, "workers": 0, "shuffle_buffer": 500},
        "optim": {"lr": 2e-3, "warmup_steps": 20, "weight_decay": 0.05},
        "train": {"max_steps": steps, "checkpoint_every": steps, "threads": 1}}))
    assert res.steps == steps
    return res.model_dir


def _bench(model_dir: Path, bands: str, tmp: Path) -> dict:
    """The harness's result entry (top-1, chance, bootstrap interval) for the held-out scenes, checked against
    right/wrong per scene computed here through core's embedder and zero-shot classifier."""
    from clipzoo.core.bench import metrics as M
    from clipzoo.core.bench.cache import Embedder
    from clipzoo.core.bench.harness import run_benchmark
    from clipzoo.core.bench.tasks import zeroshot_weights
    from clipzoo.core.models import LoadedModel
    from clipzoo.remote_sensing.tasks import simulated_zeroshot_task

    loaded = LoadedModel.from_package(model_dir, device="cpu")
    task = simulated_zeroshot_task(bands=bands)
    embedder = Embedder(loaded, tmp / "cache")
    se = embedder.samples(task.dataset, "image")
    weights = zeroshot_weights(embedder, simulate.CLASSNAMES, task.templates)
    correct = ((se.emb @ weights).argmax(axis=1) == se.labels).astype(float)
    results = run_benchmark(loaded, ["remote_sensing/simulated-zeroshot"], log=False, print_table=False,
                            cache_dir=tmp / "cache",
                            task_options={"remote_sensing/simulated-zeroshot": {"bands": bands}})
    entry = results["tasks"]["remote_sensing/simulated-zeroshot"]
    assert entry["n_items"] == len(correct) == 600 and entry["metrics"]["top1"] == pytest.approx(correct.mean())
    assert entry["chance"]["top1"] == pytest.approx(1 / 6)
    boot = entry["bootstrap"]
    idx = M.resample_indices(600, boot["resamples"], boot["seed"])
    assert entry["interval"]["top1"] == pytest.approx(list(np.percentile(correct[idx].mean(axis=1), [2.5, 97.5])))
    return entry


@pytest.mark.slow
def test_four_band_model_beats_rgb_only_by_more_than_both_intervals(tmp_path):
    """Same architecture (only the patch embedding's input channels differ), same seed, same 100 steps, same scenes
    with NIR removed: the 4-band model classifies the six covers; the RGB one cannot split the twins (~1/2)."""
    steps = 100
    scores = {}
    for bands, config in (("rgbn", "rs-sim-tiny"), ("rgb", "rs-sim-rgb-tiny")):
        entry = _bench(_train(tmp_path, bands, config, steps), bands, tmp_path)
        scores[bands] = (entry["metrics"]["top1"], *entry["interval"]["top1"])
    (four, four_lo, four_hi), (rgb, rgb_lo, rgb_hi) = scores["rgbn"], scores["rgb"]
    assert four >= 0.9, scores
    assert 1 / 6 < rgb <= 0.6, scores  # above chance (pairs are told apart), capped near 1/2 (twins are not)
    margin = four - rgb
    assert four_lo > rgb_hi, scores
    assert margin > (four_hi - four_lo) and margin > (rgb_hi - rgb_lo), scores


def test_cli_ingests_simulated_scenes_with_band_names(tmp_path):
    from rs_helpers import read_shards

    from clipzoo.core.cli import main

    assert main(["ingest", "remote_sensing", "simulated", "--count", "12", "--seed", "4", "--chip-size", "8",
                 "--bands", "nir,red", "--out", str(tmp_path / "sim")]) == 0
    samples = sorted(read_shards(tmp_path / "sim"), key=lambda s: s["__key__"])
    expected = list(simulate.simulate(12, seed=4, size=8, bands="nir,red"))
    assert len(samples) == 12
    for sample, (image, label, caption) in zip(samples, expected):
        np.testing.assert_array_equal(sample["image.npy"], image)
        assert int(sample["cls"]) == label and sample["txt"] == caption
        assert [b["name"] for b in sample["json"]["bands"]] == ["nir", "red"]
    manifest = json.loads((tmp_path / "sim" / "manifest.json").read_text())
    assert manifest["ingest"]["counters"]["class"] == {name: 2 for name in simulate.CLASSNAMES}


@pytest.mark.parametrize("args, message", [
    (["--bands", "red,swir1"], "--bands red,swir1: unknown simulated band(s) ['swir1']"),
    (["--count", "0"], "--count must be at least 1"),
    (["somefile.tif"], "the simulated source takes no inputs"),
])
def test_cli_refuses_bad_simulation_options_in_one_line(tmp_path, capsys, args, message):
    from clipzoo.core.cli import main

    out = tmp_path / "sim"
    assert main(["ingest", "remote_sensing", "simulated", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not (out / "manifest.json").exists()
