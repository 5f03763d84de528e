"""Shard writer, manifest, resumable loader and the generic `images` ingest source."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from clipzoo.core.cli import main
from clipzoo.core.data.loader import ResumableLoader, ShardStream, StreamConfig, resolve_shards
from clipzoo.core.data.synthetic import synthetic_samples
from clipzoo.core.data.writer import Manifest, ShardWriter, safe_key
from clipzoo.core.ingest import run_ingest
from clipzoo.core.sources import SyntheticSource


def _key_only(sample):
    return {"key": sample["__key__"], "caption": sample["txt"]}



@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    opts = argparse.Namespace(count=120, seed=3, split="train", image_size=32)
    run_ingest(SyntheticSource(opts), [], out, max_count=25, progress=False)
    return out


def test_writer_splits_by_count_and_records_sha256(shard_dir: Path):
    m = Manifest.load(shard_dir)
    assert [s.samples for s in m.shards] == [25, 25, 25, 25, 20]
    assert m.num_samples == 120
    for s in m.shards:
        data = (shard_dir / s.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s.sha256 and len(data) == s.bytes
    assert not list(shard_dir.glob("*.partial"))
    assert m.ingest["counters"]["license"] == {"cc0": 120}
    assert m.source["name"] == "synthetic" and m.source["options"]["count"] == 120


def test_writer_splits_by_bytes(tmp_path: Path):
    with ShardWriter(tmp_path, max_count=1000, max_bytes=30_000) as w:
        for s in synthetic_samples(20, 0, image_size=32):
            w.write(s)
    m = Manifest.load(tmp_path)
    assert len(m.shards) > 1 and m.num_samples == 20
    # every shard but the last closed as soon as it passed the byte limit
    assert all(s.bytes >= 30_000 for s in m.shards[:-1])


def test_writer_failure_leaves_only_whole_shards(tmp_path: Path):
    samples = list(synthetic_samples(7, 0, image_size=16))
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(tmp_path, max_count=3) as w:
            for i, s in enumerate(samples):
                if i == 5:
                    raise RuntimeError("boom")
                w.write(s)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000000.tar"]  # no partial, no manifest


def test_writer_rejects_bad_keys_and_missing_metadata(tmp_path: Path):
    with ShardWriter(tmp_path) as w:
        with pytest.raises(ValueError, match="no dots"):
            w.write({"__key__": "a.b", "txt": "x", "json": {}})
        with pytest.raises(ValueError, match="'json'"):
            w.write({"__key__": "a", "txt": "x"})
        w.write({"__key__": "a", "txt": "x", "json": {}})
        with pytest.raises(ValueError, match="duplicate"):
            w.write({"__key__": "a", "txt": "y", "json": {}})
    assert safe_key("PMC123", "fig.1 a/b") == "PMC123_fig-1-a-b"


def test_resolve_shards_forms(shard_dir: Path):
    from_folder = resolve_shards(shard_dir)
    assert len(from_folder) == 5
    pattern = str(shard_dir / "shard-u00000-{000000..000004}.tar")  # the synthetic source is one work unit
    assert resolve_shards(pattern) == from_folder
    assert resolve_shards([from_folder[0], from_folder[1]]) == from_folder[:2]
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_shards(str(shard_dir / "nope-{0..1}.tar"))


def _make(shards, workers, split, rank=0, world=1, batch=8) -> ResumableLoader:
    stream = ShardStream(shards, _key_only, StreamConfig(batch_size=batch, seed=11, shuffle_buffer=16,
                                                         split=split, rank=rank, world_size=world))
    return ResumableLoader(stream, num_workers=workers)


def _keys(batches) -> list[str]:
    return [k for b in batches for k in b["key"]]


@pytest.mark.parametrize("workers,split", [(0, "samples"), (2, "shards"), (2, "samples")])
def test_resume_mid_epoch_neither_repeats_nor_skips(shard_dir: Path, workers: int, split: str):
    shards = resolve_shards(shard_dir)
    full = _keys(_make(shards, workers, split).epoch_batches())
    assert len(full) == len(set(full)) and len(full) >= 120 - 8 * max(1, workers) * 2

    first = _make(shards, workers, split)
    it = first.epoch_batches()
    seen = _keys(next(it) for _ in range(3))
    state = json.loads(json.dumps(first.state_dict()))  # survives serialisation, as in a checkpoint
    second = _make(shards, workers, split)
    second.load_state_dict(state)
    seen += _keys(second.epoch_batches())
    assert len(seen) == len(set(seen)), "the resumed epoch repeated samples"
    assert set(seen) == set(full), "the resumed epoch skipped samples"
    assert second.state.epoch == 1 and second.state.consumed == {}


def test_epochs_reshuffle_and_resume_refuses_other_settings(shard_dir: Path):
    shards = resolve_shards(shard_dir)
    loader = _make(shards, 0, "samples")
    e0 = _keys(loader.epoch_batches())
    e1 = _keys(loader.epoch_batches())
    assert sorted(e0) == sorted(e1) and e0 != e1
    state = loader.state_dict()
    with pytest.raises(ValueError, match="batch_size: checkpoint 8 vs now 4"):
        _make(shards, 0, "samples", batch=4).load_state_dict(state)


def test_sample_split_makes_rank_batches_a_partition_of_the_global_batch(shard_dir: Path):
    shards = resolve_shards(shard_dir)
    whole = list(_make(shards, 0, "samples", batch=8).epoch_batches())
    r0 = list(_make(shards, 0, "samples", rank=0, world=2, batch=4).epoch_batches())
    r1 = list(_make(shards, 0, "samples", rank=1, world=2, batch=4).epoch_batches())
    assert len(r0) == len(r1) == len(whole)
    for w, a, b in zip(whole, r0, r1):
        assert sorted(w["key"]) == sorted(a["key"] + b["key"])


def test_shard_split_gives_each_rank_its_own_shards(shard_dir: Path):
    shards = resolve_shards(shard_dir)
    r0 = set(_keys(_make(shards, 0, "shards", rank=0, world=2, batch=5).epoch_batches()))
    r1 = set(_keys(_make(shards, 0, "shards", rank=1, world=2, batch=5).epoch_batches()))
    assert r0 and r1 and not (r0 & r1)


def test_shards_inspect_prints_summary_and_samples(shard_dir: Path, capsys):
    assert main(["shards", "inspect", str(shard_dir), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "120 samples in 5 shards" in out and "license: cc0=120" in out
    assert out.count("png: image 32x32 RGB") == 2  # community member names: KEY.png


# -- the generic images source on real files ---------------------------------------------------------
def test_images_source_with_csv_sidecar_and_bad_files(shared_data: Path, tmp_path: Path):
    src = tmp_path / "imgs"
    src.mkdir()
    shutil.copy(shared_data / "biomed/medical_images/fundus/retina.jpg", src / "retina.JPG")
    shutil.copy(shared_data / "biomed/medical_images/pathology/ihc.png", src / "ihc.png")
    (src / "ihc.txt").write_text("Immunohistochemistry of colonic glands.\n")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a truncated PNG
    (src / "nolabel.jpg").write_bytes((shared_data / "biomed/medical_images/fundus/retina.jpg").read_bytes()[:5000])
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "label"])
        w.writerow(["retina.jpg", "normal fundus"])
        w.writerow(["broken.png", "x"])
    out = tmp_path / "out"
    code = main(["ingest", "core", "images", str(src), "--captions", str(table), "--out", str(out),
                 "--label-template", "A fundus photograph: {label}.", "--license", "cc0", "--max-side", "256"])
    assert code == 0
    m = Manifest.load(out)
    assert m.num_samples == 2 and m.ingest["inputs_seen"] == 4
    reasons = {Path(s["path"]).name: s["reason"] for s in m.ingest["skipped"]}
    assert reasons["broken.png"].startswith("unreadable image")
    assert reasons["nolabel.jpg"].startswith("no caption")
    from clipzoo.core.data.loader import _decoder
    from clipzoo.core.data.shardset import iter_samples

    decode = _decoder()
    samples = {s["__key__"]: s for s in map(decode, iter_samples(m.shard_paths(out)))}
    retina = samples["imgs_retina"]
    assert retina["txt"] == "A fundus photograph: normal fundus."
    assert retina["json"]["original_size"] == [1411, 1411] and max(retina["png"].size) == 256
    assert samples["imgs_ihc"]["txt"] == "Immunohistochemistry of colonic glands."


def test_ingest_exit_codes(tmp_path: Path, capsys):
    assert main(["ingest", "core", "images", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "nothing could be read" in capsys.readouterr().err
    assert main(["ingest", "core", "images", "--out", str(tmp_path / "o2")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "nodomain", "x", "--out", str(tmp_path)])
    assert exc.value.code == 2
