"""clipzoo curate on real images and captions from ../shared/data plus copies the test derives from them.

Set A holds six real pictures with captions; set B holds derived copies (a lossless PNG of a decoded JPEG,
a half-size resize, a JPEG re-encoded at quality 50, a 2%-per-side crop, each with its caption in another
case/spacing), one more real picture, and a real picture that carries A's caption for another picture. The
counts each step must find follow from that construction.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipzoo.core.cli import main
from clipzoo.core.curate import CurateError, run_curate
from clipzoo.core.curate.metadata import load_entries
from clipzoo.core.curate.signatures import normalize_text
from clipzoo.core.curate.steps import draw
from clipzoo.core.ingest import run_ingest
from clipzoo.core.sources import ImagesSource

PICTURES = {  # name -> (shared-data path, caption)
    "retina": ("biomed/medical_images/fundus/retina.jpg",
               "A colour fundus photograph of the retina with the optic disc."),
    "ihc": ("biomed/medical_images/pathology/ihc.png", "Immunohistochemistry of tissue, DAB stain with hematoxylin."),
    "square": ("remote_sensing/images/rsicd/square_102.jpg", "A square with green trees and a fountain in the center."),
    "airport": ("remote_sensing/images/rsicd/airport_17.jpg",
                "Many planes are parked next to the terminal of the airport."),
    "figure": ("biomed/jats_packages/elife-19405/elife-19405-fig1.tif", "Filopodia of cells grip the matrix in "
               "fluorescence microscopy."),
}
OTHER = ("biomed/jats_packages/elife-19405/elife-19405-inf1.tif", "A portrait drawing used as an inline graphic.")


def _save(image: Image.Image, path: Path, caption: str, **kw) -> None:
    image.save(path, **kw)
    path.with_suffix(".txt").write_text(caption, encoding="utf-8")


def _recase(caption: str) -> str:
    return "  " + caption.upper().replace(" ", "   ") + " \n"


def _crop(im: Image.Image, frac: float) -> Image.Image:
    w, h = im.size
    dw, dh = int(w * frac), int(h * frac)
    return im.crop((dw, dh, w - dw, h - dh))


def _ingest(folder: Path, out: Path, license: str) -> Path:
    options = ImagesSource.default_options(license=license, max_side=4096)
    # one work unit for the folder (the engine's derived unit size would give each image its own unit and shard)
    run_ingest(ImagesSource(options), [folder], out, max_count=3, unit_size=64, progress=False)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("curate")
    a, b = root / "a", root / "b"
    a.mkdir(), b.mkdir()
    rgb = {k: Image.open(shared_data / p).convert("RGB") for k, (p, _) in PICTURES.items()}
    for name, (_, caption) in PICTURES.items():
        _save(rgb[name], a / f"{name}.png", caption)
    other = Image.open(shared_data / OTHER[0]).convert("RGB")
    _save(other, a / "other.png", OTHER[1])
    caps = {k: c for k, (_, c) in PICTURES.items()}
    _save(rgb["retina"], b / "retina_png.png", _recase(caps["retina"]))  # decoded JPEG pixels, lossless: exact
    half = rgb["ihc"].resize((rgb["ihc"].width // 2, rgb["ihc"].height // 2), Image.LANCZOS)
    _save(half, b / "ihc_half.png", _recase(caps["ihc"]))
    _save(rgb["square"], b / "square_q50.jpg", _recase(caps["square"]), quality=50)
    _save(_crop(rgb["airport"], 0.02), b / "airport_crop.png", _recase(caps["airport"]))
    # a different real picture (the figure rotated a quarter turn) with the figure's caption re-spaced
    _save(rgb["figure"].transpose(Image.Transpose.ROTATE_90), b / "figure_rot.png", _recase(caps["figure"]))
    # unique: the pathology picture flipped upside down, with its own caption
    _save(rgb["ihc"].transpose(Image.Transpose.FLIP_TOP_BOTTOM), b / "ihc_flip.png",
          "Upside-down view of a stained section.")
    return {"a": _ingest(a, root / "shards_a", "unknown"), "b": _ingest(b, root / "shards_b", "cc0"), "root": root,
            "rgb": rgb, "caps": caps}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _kept_keys(folder: Path) -> list[str]:
    from clipzoo.core.curate.signatures import iter_shard

    m = _manifest(folder)
    return [s["__key__"] for shard in m["shards"] for s in iter_shard(str(folder / shard["name"]))]


def test_dedup_finds_exact_near_and_caption_duplicates(corpus, tmp_path):
    out = tmp_path / "out"
    report = run_curate([corpus["a"], corpus["b"]], out, [{"dedup": {}}], workers=1, progress=False)
    step = report["steps"][0]
    # exact: the PNG of the decoded retina JPEG; pHash: that one plus resize, re-encode, crop; captions: the four
    # copies' re-cased captions plus the rotated figure's (its picture is far from every other by pHash)
    assert step["pairs"] == {"pixels": 1, "phash": 4, "caption": 5}
    assert step["clusters_total"] == 5 and report["samples_in"] == 12 and report["samples_out"] == 7
    kept = _kept_keys(out)
    assert sorted(kept) == sorted([f"a_{n}" for n in (*PICTURES, "other")] + ["b_ihc_flip"])
    removed = {r["key"]: r["reason"] for r in _manifest(out)["curation"]["removed"]}
    assert set(removed) == {"b_retina_png", "b_ihc_half", "b_square_q50", "b_airport_crop", "b_figure_rot"}
    assert removed["b_retina_png"].startswith("exact (decoded pixels) of a_retina")
    assert removed["b_figure_rot"].startswith("near-duplicate caption (Jaccard 1.00) of a_figure")
    assert _manifest(out)["num_samples"] == 7
    # images only, and the license keep rule: B's cc0 copies win over A's unknown-licensed originals
    out2 = tmp_path / "out2"
    report = run_curate([corpus["a"], corpus["b"]], out2, [{"dedup": {"by": ["pixels", "phash"], "keep": "license",
                                                                    "licenses": ["cc0", "cc-by"]}}], progress=False)
    assert report["steps"][0]["pairs"] == {"pixels": 1, "phash": 4} and report["samples_out"] == 8
    assert {"b_retina_png", "b_ihc_half", "b_square_q50", "b_airport_crop", "b_figure_rot"} <= set(_kept_keys(out2))
    assert not {"a_retina", "a_ihc", "a_square", "a_airport"} & set(_kept_keys(out2))


def test_output_is_independent_of_workers_and_copies_bytes(corpus, tmp_path):
    one = run_curate([corpus["a"], corpus["b"]], tmp_path / "w1", [{"dedup": {}}], workers=1, progress=False)
    two = run_curate([corpus["a"], corpus["b"]], tmp_path / "w2", [{"dedup": {}}], workers=2, progress=False)
    assert one["funnel"] == two["funnel"]
    m1, m2 = _manifest(tmp_path / "w1"), _manifest(tmp_path / "w2")
    assert [(s["name"], s["sha256"]) for s in m1["shards"]] == [(s["name"], s["sha256"]) for s in m2["shards"]]
    assert m1["curation"]["removed"] == m2["curation"]["removed"]
    from clipzoo.core.curate.signatures import iter_shard

    source = {s["__key__"]: s for shard in _manifest(corpus["a"])["shards"]
              for s in iter_shard(str(corpus["a"] / shard["name"]))}
    for shard in m1["shards"]:
        for sample in iter_shard(str(tmp_path / "w1" / shard["name"])):
            if sample["__key__"] in source:  # kept samples are copied member for member, byte for byte
                assert {k: v for k, v in sample.items()} == source[sample["__key__"]]


def _shard_bytes(folder: Path) -> list[tuple[str, bytes]]:
    """The listed shards of a set, by name, with their bytes (what must not depend on workers or engine)."""
    return [(s["name"], (folder / s["name"]).read_bytes()) for s in _manifest(folder)["shards"]]


def test_out_rules_refuse_overwrite_and_lock(corpus, tmp_path, capsys):
    """--out follows the ingest engine's rules: a non-empty folder is refused in one line with nothing written,
    --overwrite replaces a curated set whole, and a held lock makes a second run fail at once naming the holder."""
    import os

    from clipzoo.core.ingest_engine import OutLock
    from clipzoo.core.io import Storage

    a, b = str(corpus["a"]), str(corpus["b"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not a shard set")
    assert main(["curate", a, "--out", str(mine), "--dedup"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {mine} is not empty (1 entries); add --overwrite" in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]  # nothing written, not even a lock file
    assert main(["curate", a, "--out", "s3://bucket/curated", "--dedup"]) == 2  # the workers write local files
    assert "curate writes to a local folder" in capsys.readouterr().err

    out = tmp_path / "out"
    assert main(["curate", a, b, "--out", str(out), "--dedup", "--shard-size", "2", "--workers", "1"]) == 0
    # A's two input shards of 3 kept whole (2 + 1 output shards each), B's one kept sample in a fifth
    assert _manifest(out)["num_samples"] == 7 and len(_manifest(out)["shards"]) == 5
    # --overwrite with other steps: no shard of the old set survives beside the new one
    assert main(["curate", a, "--out", str(out), "--overwrite", "--min-words", "3", "--workers", "1"]) == 0
    capsys.readouterr()
    assert _manifest(out)["num_samples"] == 6
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(s["name"] for s in _manifest(out)["shards"])
    assert not (out / ".units").exists()
    # --resume on a finished set: nothing to finish
    assert main(["curate", a, "--out", str(out), "--resume", "--min-words", "3"]) == 2
    assert "is a finished shard set" in capsys.readouterr().err

    before = _shard_bytes(out)
    held = OutLock(Storage(out), command="curate")
    held.acquire()  # another run holding --out (the lock is per open file, so this process counts as another)
    try:
        assert main(["curate", a, "--out", str(out), "--overwrite", "--dedup"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"another curate is writing there (pid {os.getpid()} on " in err
        assert _shard_bytes(out) == before and _manifest(out)["num_samples"] == 6  # --overwrite did not take it
    finally:
        held.release()


def test_resume_writes_only_the_units_without_a_done_record(corpus, tmp_path, monkeypatch):
    """A curate killed in pass 2 is finished by --resume: the units with a done record are not written again,
    and the result is the uninterrupted run's bytes."""
    from clipzoo.core.curate import engine

    inputs, steps = [corpus["a"], corpus["b"]], [{"dedup": {}}]
    run_curate(inputs, tmp_path / "ref", steps, shard_size=2, progress=False)
    real, written = engine._write_unit, []

    def killed_after_two(task):
        if len(written) == 2:
            raise KeyboardInterrupt  # as a kill: not an error the run handles
        written.append(task.unit.index)
        return real(task)

    out = tmp_path / "out"
    monkeypatch.setattr(engine, "_write_unit", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_curate(inputs, out, steps, shard_size=2, progress=False)
    assert not (out / "manifest.json").exists() and len(list((out / ".units").glob("u*.json"))) == 2
    with pytest.raises(CurateError, match="is not empty"):  # an interrupted run is not overwritten by accident
        run_curate(inputs, out, steps, shard_size=2, progress=False)

    first, written = written, []
    monkeypatch.setattr(engine, "_write_unit", lambda task: (written.append(task.unit.index), real(task))[1])
    report = run_curate(inputs, out, steps, shard_size=2, resume=True, progress=False)
    # 3 of the 4 input shards keep samples (B's second keeps none): 2 written before the kill, 1 after
    assert report["units_resumed"] == 2 and first == [0, 1] and written == [2]
    assert _shard_bytes(out) == _shard_bytes(tmp_path / "ref")
    assert _manifest(out)["curation"]["removed"] == _manifest(tmp_path / "ref")["curation"]["removed"]


@pytest.mark.slow
def test_ray_engine_writes_the_process_engines_bytes(corpus, local_ray, tmp_path):
    """Both passes on Ray tasks (a real local Ray, 2 CPUs, 2 tasks at a time) give the process engine's curated
    set byte for byte (its 1 worker writes what 2 do: test_output_is_independent_of_workers_and_copies_bytes)."""
    args = [str(corpus["a"]), str(corpus["b"]), "--dedup", "--shard-size", "2"]
    assert main(["curate", *args, "--out", str(tmp_path / "pool"), "--workers", "1"]) == 0
    assert main(["curate", *args, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 0
    pool, ray = _shard_bytes(tmp_path / "pool"), _shard_bytes(tmp_path / "ray")
    assert pool == ray and len(pool) == 5
    assert _manifest(tmp_path / "ray")["curation"] == _manifest(tmp_path / "pool")["curation"]
    assert json.loads((tmp_path / "ray" / "report.json").read_text())["engine"] == "ray"


def test_decontaminate_against_image_folder_and_shards(corpus, tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    rgb, caps = corpus["rgb"], corpus["caps"]
    # a near copy and an exact copy of training pictures, with captions of their own
    _save(_crop(rgb["airport"], 0.02), bench / "airport_test.jpg", "Test item one of the benchmark.", quality=85)
    _save(rgb["ihc"], bench / "ihc_test.png", "Held-out pathology benchmark picture.")
    other = rgb["square"].transpose(Image.Transpose.ROTATE_180)  # an unrelated picture whose caption is A's square one
    _save(other, bench / "square_caption.png", caps["square"].lower())
    report = run_curate([corpus["a"]], tmp_path / "out", [{"decontaminate": {"images": [str(bench)]}}],
                        progress=False)
    step = report["steps"][0]
    assert step["found"] == {"pixels": 1, "phash": 1, "caption": 1} and step["reference_samples"] == 3
    curation = _manifest(tmp_path / "out")["curation"]
    assert curation["decontaminated"] is True
    assert curation["decontaminated_against"] == [{"kind": "images", "name": "bench", "samples": 3}]
    ingest = _manifest(tmp_path / "out")["ingest"]  # what train_summary.json (and so the model card) receives
    assert ingest["notes"]["decontaminated_against"] == curation["decontaminated_against"]
    assert ingest["counters"]["license"] == {"unknown": 3}
    assert {r["key"] for r in curation["removed"]} == {"a_airport", "a_ihc", "a_square"}
    assert sorted(_kept_keys(tmp_path / "out")) == ["a_figure", "a_other", "a_retina"]
    # the same benchmark as a shard folder, captions ignored: only the two picture copies go
    bench_shards = _ingest(bench, tmp_path / "bench_shards", "cc-by")
    report = run_curate([corpus["a"]], tmp_path / "out2",
                        [{"decontaminate": {"shards": [str(bench_shards)], "by": ["pixels", "phash"]}}], progress=False)
    assert report["steps"][0]["found"] == {"pixels": 1, "phash": 1, "caption": 0} and report["samples_out"] == 4


def test_decontaminate_against_a_bench_task_removes_the_planted_samples(tmp_path):
    from clipzoo.core.sources import SyntheticSource

    train = tmp_path / "train"
    run_ingest(SyntheticSource(argparse.Namespace(count=60, seed=3, split="train", image_size=32)), [], train,
               max_count=30, progress=False)
    planted = tmp_path / "planted"  # 4 samples of the benchmark's own held-out set, written into a training set
    from clipzoo.core.bench.core_tasks import synthetic_dataset
    from clipzoo.core.data.writer import ShardWriter

    with ShardWriter(planted, prefix="planted") as writer:
        for i, sample in enumerate(synthetic_dataset("test", 20, 0, 32).samples()):
            if i in (2, 5, 11, 17):
                writer.write(sample)
    task = {"name": "core/synthetic-retrieval", "options": {"count": 20, "image_size": 32}}
    # tiny synthetic shapes share pHashes across different pictures: decoded pixels only
    steps = [{"decontaminate": {"tasks": [task], "by": ["pixels"]}}]
    report = run_curate([train, planted], tmp_path / "out", steps, progress=False)
    removed = _manifest(tmp_path / "out")["curation"]["removed"]
    assert [r["set"] for r in removed] == [1, 1, 1, 1] and report["samples_out"] == 60
    assert all("benchmark sample" in r["reason"] for r in removed)
    against = report["decontaminated_against"][0]
    assert against["kind"] == "task" and against["name"] == "core/synthetic-retrieval" and against["samples"] == 20


def _naive_balance(texts: dict[str, str], entries: list[str], t: int, seed: int) -> tuple[set[str], dict[str, int]]:
    """MetaCLIP balancing written directly: scan every entry at every position of every caption."""
    def matches(text: str) -> list[str]:
        found = []
        for entry in entries:
            for i in range(len(text) - len(entry) + 1):
                if text.startswith(entry, i) and (i == 0 or not text[i - 1].isalnum()) and \
                        (i + len(entry) == len(text) or not text[i + len(entry)].isalnum()):
                    found.append(entry)
                    break
        return found

    matched = {key: matches(normalize_text(text)) for key, text in texts.items()}
    counts: dict[str, int] = {}
    for found in matched.values():
        for entry in found:
            counts[entry] = counts.get(entry, 0) + 1
    kept = {key for key, found in matched.items()
            if not found or any(random.Random(f"{seed}/{key}/{e}").random() < min(1.0, t / counts[e]) for e in found)}
    return kept, counts


def test_balance_equals_a_naive_implementation(shared_data, tmp_path):
    from clipzoo.remote_sensing.sources import CaptionsSource

    shards = tmp_path / "ucm"
    options = CaptionsSource.default_options(captions_only=True)
    run_ingest(CaptionsSource(options), [shared_data / "remote_sensing/captions/ucm_precomp"], shards,
               max_count=50, progress=False)
    from clipzoo.core.curate.signatures import iter_shard, primary_text

    texts = {s["__key__"]: primary_text(s) for shard in _manifest(shards)["shards"]
             for s in iter_shard(str(shards / shard["name"]))}
    entries, _ = load_entries(["remote_sensing"])
    report = run_curate([shards], tmp_path / "out", [{"balance": {"domains": ["remote_sensing"], "t": 6, "seed": 7}}],
                        workers=2, progress=False)
    kept, counts = _naive_balance(texts, entries, 6, 7)
    step = report["steps"][0]
    assert {e: before for e, (before, _) in step["entry_counts"].items()} == counts
    assert set(_kept_keys(tmp_path / "out")) == kept
    assert step["head_entries"] == sum(1 for c in counts.values() if c > 6) > 0
    assert report["samples_in"] == len(texts) > report["samples_out"] == len(kept)
    assert draw(7, "k", "airport") == random.Random("7/k/airport").random()


def test_filters_caption_language_and_image_shape(corpus, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    rgb = corpus["rgb"]
    _save(rgb["retina"].resize((400, 80)), extra / "strip.png", "A narrow strip cut from a photograph of the retina.")
    _save(rgb["ihc"].resize((48, 48)), extra / "tiny.png", "A small thumbnail of a stained tissue section here.")
    _save(rgb["square"], extra / "german.png", "Ein großer Platz mit grünen Bäumen und einem Brunnen in der Mitte.")
    _save(rgb["airport"], extra / "short.png", "Airport.")
    extra_shards = _ingest(extra, tmp_path / "extra_shards", "cc0")
    steps = [{"filter": {"min_words": 3, "langs": ["en"], "min_side": 64, "max_aspect": 3.0}}]
    report = run_curate([corpus["a"], extra_shards], tmp_path / "out", steps, progress=False)
    assert report["steps"][0]["removed_by_kind"] == {"aspect": 1, "language": 1, "min_side": 1, "words": 1}
    assert sorted(_kept_keys(tmp_path / "out")) == sorted(f"a_{n}" for n in (*PICTURES, "other"))


def test_cli_runs_prints_the_funnel_and_refuses_bad_input(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("workers: 1\nsteps:\n  - dedup: {by: [pixels, phash]}\n  - filter: {min_words: 3}\n")
    assert main(["curate", "--recipe", str(recipe), str(corpus["a"]), str(corpus["b"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "8 of 12 samples kept" in printed and "dedup" in printed and "filter" in printed
    assert (out / "report.png").stat().st_size > 0 and (out / "report.md").is_file()
    assert main(["curate", "report", str(out)]) == 0
    assert "| dedup | 12 | 4 | 8 |" in capsys.readouterr().out
    # a non-empty --out, a folder that is not a shard set, an unknown step: one line, exit 2, nothing written
    before = sorted(p.name for p in out.iterdir())
    assert main(["curate", str(corpus["a"]), "--out", str(out), "--dedup"]) == 2
    assert "is not empty (" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert main(["curate", str(tmp_path), "--out", str(tmp_path / "x"), "--dedup"]) == 2
    assert "not a shard set" in capsys.readouterr().err and not (tmp_path / "x").exists()
    recipe.write_text("steps:\n  - shuffle: {}\n")
    assert main(["curate", "--recipe", str(recipe), str(corpus["a"]), "--out", str(tmp_path / "y")]) == 2
    assert "unknown curate step 'shuffle'" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert main(["curate", "report", str(tmp_path)]) == 2
    with pytest.raises(CurateError, match="min_score / top_fraction need a score_model"):
        run_curate([corpus["a"]], tmp_path / "z", [{"filter": {"min_score": 0.2}}], progress=False)
    assert main(["curate", str(corpus["a"]), "--out", str(out), "--overwrite", "--min-words", "3"]) == 0
    assert _manifest(out)["num_samples"] == 6 and not list(out.glob(".units"))


MICRO_MODEL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.mark.slow
def test_clip_score_filter_keeps_matched_pairs_over_shuffled_ones(tmp_path):
    """A tiny CLIP trained for a bounded number of steps scores matched pairs above shuffled ones: the top half
    by CLIP score is mostly the matched half (chance: half)."""
    from clipzoo.core.data.synthetic import synthetic_samples
    from clipzoo.core.data.writer import ShardWriter
    from clipzoo.core.sources import SyntheticSource
    from clipzoo.core.train import load_config, train

    shards = tmp_path / "train"
    run_ingest(SyntheticSource(argparse.Namespace(count=1000, seed=0, split="train", image_size=32)), [], shards,
               max_count=500, progress=False)
    cfg = load_config(base={
        "run": {"output_dir": str(tmp_path / "run"), "mlflow": False, "log_every": 100, "progress": False, "seed": 0},
        "model": {"config": MICRO_MODEL},
        "data": {"train": str(shards), "batch_size": 64, "workers": 0, "shuffle_buffer": 500},
        "optim": {"lr": 3e-3, "warmup_steps": 20, "weight_decay": 0.05},
        "train": {"max_steps": 150, "checkpoint_every": 10_000, "threads": 1},
    })
    model_dir = train(cfg).model_dir
    pairs = list(synthetic_samples(80, 5, "test", 32))
    texts = [p["txt"] for p in pairs]
    mixed = tmp_path / "mixed"
    with ShardWriter(mixed, prefix="mixed") as writer:
        for i, sample in enumerate(pairs):
            matched = i % 2 == 0
            caption = texts[i] if matched else texts[(i + 2) % len(texts)]  # another sample's caption
            writer.write({**sample, "__key__": f"{'match' if matched else 'shuffled'}{i:03d}", "txt": caption})
    report = run_curate([mixed], tmp_path / "out", [{"filter": {"score_model": str(model_dir), "top_fraction": 0.5}}],
                        progress=False)
    kept = _kept_keys(tmp_path / "out")
    assert len(kept) == 40 and report["steps"][0]["removed_by_kind"] == {"score": 40}
    matched_share = sum(k.startswith("match") for k in kept) / len(kept)
    print(f"matched share of the top half by CLIP score: {matched_share:.2f} (chance 0.5)")
    assert matched_share >= 0.75


def test_pipeline_runs_a_curate_step_trains_on_its_output_and_prints_the_funnel(tmp_path, capsys):
    import yaml

    recipe = {
        "name": "mini-curate",
        "ingest": [{"name": "train", "source": "core synthetic", "args": ["--count", "96", "--image-size", "32"]},
                   {"name": "test", "source": "core synthetic",
                    "args": ["--count", "20", "--split", "test", "--image-size", "32"]}],
        "curate": [{"name": "train", "inputs": ["${ingest.train}", "${ingest.test}"],
                    "steps": [{"dedup": {"by": ["pixels"]}}, {"decontaminate": {"shards": ["${ingest.test}"],
                                                                               "by": ["pixels"]}}]}],
        "train": {"model": {"config": MICRO_MODEL}, "data": {"train": "${curate.train}", "batch_size": 16},
                  "train": {"max_steps": 2, "checkpoint_every": 2}, "run": {"mlflow": False, "progress": False}},
    }
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["pipeline", "run", str(path), "--workdir", str(tmp_path / "runs"), "--no-register"]) == 0
    out = capsys.readouterr().out
    # the test split planted beside the training set is removed again by decontamination: 116 in, 96 out
    assert re.search(r"curate train +116 -> 96 samples  dedup -0  decontaminate -20", out), out
    summary = json.loads((tmp_path / "runs/mini/train/model/train_summary.json").read_text())
    assert summary["data"][0]["name"] == "curated_train"
    assert summary["data"][0]["ingest"]["notes"]["decontaminated_against"][0]["kind"] == "shards"


def _with_preprocess_note(src: Path, dst: Path, note: dict) -> Path:
    """A copy of shard set ``src`` whose manifest records ``note`` as its source's preprocessing (astro sources
    record their light-curve/spectrum settings and feature statistics this way)."""
    import shutil

    shutil.copytree(src, dst)
    data = _manifest(dst)
    data.setdefault("ingest", {}).setdefault("notes", {})["preprocess"] = note
    (dst / "manifest.json").write_text(json.dumps(data))
    return dst


def test_curated_set_carries_its_inputs_preprocess_note_and_refuses_inputs_that_disagree(corpus, tmp_path):
    note = {"metadata": {"features": ["parallax", "bp_rp"], "mean": [1.5, 0.8], "std": [0.5, 0.3]}}
    a = _with_preprocess_note(corpus["a"], tmp_path / "a", note)
    b = _with_preprocess_note(corpus["b"], tmp_path / "b", note)
    run_curate([a, b], tmp_path / "out", steps=[{"dedup": {}}], progress=False)
    # the trainer reads ingest.notes.preprocess to put the data's preprocessing on the model
    assert _manifest(tmp_path / "out")["ingest"]["notes"]["preprocess"] == note

    other = {"metadata": {**note["metadata"], "std": [0.5, 0.4]}}
    c = _with_preprocess_note(corpus["b"], tmp_path / "c", other)
    with pytest.raises(CurateError, match=r"preprocess.*metadata\.std"):
        run_curate([a, c], tmp_path / "mixed", steps=[{"dedup": {}}], progress=False)
    assert not (tmp_path / "mixed").exists()  # refused before anything was written
