"""Shard sets on local disk: valid only through their manifest, bad shards as one line, community shards.

Each defect of issue 10/12 is reproduced here first: a killed ingest's folder (whole-looking shards, no manifest)
was trained on silently; a truncated shard looked healthy to `shards inspect` and stopped training with a
`tarfile.ReadError` traceback; img2dataset-style shards (KEY.jpg/KEY.txt/KEY.json) were unreadable.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from clipzoo.core.cli import main
from clipzoo.core.data.loader import ResumableLoader, ShardStream, StreamConfig, resolve_shards
from clipzoo.core.data.shardset import BadShardError, ShardSetError, iter_samples
from clipzoo.core.data.synthetic import synthetic_samples
from clipzoo.core.data.writer import Manifest, ShardWriter

MICRO_MODEL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def _write_set(out: Path, count: int = 40, per_shard: int = 10) -> Manifest:
    with ShardWriter(out, max_count=per_shard) as writer:
        for sample in synthetic_samples(count, 0, image_size=32):
            writer.write(sample)
    return Manifest.load(out)


def _keys(shards, workers: int = 0, policy: str = "stop", batch: int = 5) -> tuple[list[str], ResumableLoader]:
    stream = ShardStream(shards, lambda s: {"key": s["__key__"]},
                         StreamConfig(batch_size=batch, split="shards" if workers else "samples", on_bad_shard=policy))
    loader = ResumableLoader(stream, num_workers=workers)
    return [k for b in loader.epoch_batches() for k in b["key"]], loader


def _train_cli(tmp_path: Path, train: str, steps: int = 3, **data) -> list[str]:
    cfg = {
        "run": {"output_dir": str(tmp_path / "run"), "mlflow": False, "progress": False, "seed": 1},
        "model": {"config": MICRO_MODEL},
        "data": {"train": train, "batch_size": 4, "workers": 0, "shuffle_buffer": 8, "split": "samples", **data},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "train": {"max_steps": steps, "checkpoint_every": 100},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["train", str(path)]


@pytest.fixture
def killed_ingest(tmp_path: Path) -> Path:
    """What a killed ingest leaves: whole-looking shards and no manifest (the writer dies before its commit)."""
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(out, max_count=10) as writer:
            for i, sample in enumerate(synthetic_samples(35, 0, image_size=32)):
                if i == 32:
                    raise KeyboardInterrupt
                writer.write(sample)
    assert sorted(p.name for p in out.iterdir()) == [f"shard-00000{i}.tar" for i in range(3)]
    return out


def test_folder_without_manifest_is_refused_and_opt_in_reads_it(killed_ingest: Path, tmp_path: Path, capsys):
    with pytest.raises(ShardSetError, match="no manifest.json: an unfinished or foreign shard set.*--resume.*"
                                            "allow_unmanifested"):
        resolve_shards(killed_ingest)
    assert main(["shards", "inspect", str(killed_ingest)]) == 1
    err = capsys.readouterr().err
    assert "UNHEALTHY" in err and f"{killed_ingest}: no manifest.json" in err

    assert main(_train_cli(tmp_path, str(killed_ingest))) == 2
    err = capsys.readouterr().err
    assert "no manifest.json" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoints").exists()

    # the explicit opt-ins: the flag, a glob: pattern, a brace pattern
    opted = resolve_shards(killed_ingest, allow_unmanifested=True)
    assert opted == resolve_shards(f"glob:{killed_ingest}/*.tar") == resolve_shards(
        str(killed_ingest / "shard-{000000..000002}.tar"))
    keys, _ = _keys(opted)
    assert len(keys) == len(set(keys)) == 30


def test_truncated_shard_is_unhealthy_stops_training_with_one_line_or_is_skipped(tmp_path: Path, capsys):
    out = tmp_path / "set"
    manifest = _write_set(out)
    victim = out / manifest.shards[1].name
    victim.write_bytes(victim.read_bytes()[: manifest.shards[1].bytes // 2])

    assert main(["shards", "inspect", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{victim}: size mismatch" in err and "UNHEALTHY" in err

    for workers in (0, 2):  # in the main process and from a DataLoader worker: the same one line
        with pytest.raises(BadShardError) as exc:
            _keys(resolve_shards(out), workers=workers)
        assert str(exc.value).startswith(f"{victim}: size mismatch (truncated)") and "\n" not in str(exc.value)

    assert main(_train_cli(tmp_path, str(out), steps=12)) == 1  # more than the 10 batches of an epoch
    err = capsys.readouterr().err
    assert err.strip().startswith(f"error: {victim}: size mismatch") and "Traceback" not in err

    skip_run = tmp_path / "skip"
    skip_run.mkdir()
    assert main(_train_cli(skip_run, str(out), steps=12, on_bad_shard="skip")) == 0  # the trainer's config value
    assert "trained 12 steps" in capsys.readouterr().out

    keys, loader = _keys(resolve_shards(out), workers=2, policy="skip")
    assert len(keys) == len(set(keys)) == 30  # the 3 good shards, whole
    assert list(loader.bad_shards) == [str(victim)] and "size mismatch" in loader.bad_shards[str(victim)]


def test_tar_read_error_without_a_manifest_is_one_line(killed_ingest: Path):
    shard = killed_ingest / "shard-000001.tar"
    with tarfile.open(shard) as tar:
        second = tar.getmembers()[1].offset
    data = bytearray(shard.read_bytes())
    data[second:second + 512] = b"\xff" * 512  # the second member's header becomes garbage
    shard.write_bytes(bytes(data))
    with pytest.raises(BadShardError, match=rf"^{shard}: tar read error \(.*\); the shard is corrupt or truncated"):
        list(iter_samples(resolve_shards(str(killed_ingest / "shard-{000000..000002}.tar"))))


def test_verify_catches_a_flipped_byte_that_inspect_cannot_see(tmp_path: Path, capsys):
    out = tmp_path / "set"
    manifest = _write_set(out)
    assert main(["shards", "verify", str(out)]) == 0
    assert "all 4 shards match their sha256 (40 samples)" in capsys.readouterr().out

    victim = out / manifest.shards[2].name
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x01  # same size, one bit different
    victim.write_bytes(bytes(data))
    assert main(["shards", "inspect", str(out), "-n", "0"]) == 0  # sizes match: inspect cannot tell
    capsys.readouterr()
    assert main(["shards", "verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 of 4 shards FAILED" in err and f"{victim}: sha256" in err and "differs from the manifest" in err


def test_inspect_reports_missing_extra_and_partial_files(tmp_path: Path, capsys):
    out = tmp_path / "set"
    manifest = _write_set(out)
    (out / manifest.shards[3].name).unlink()
    (out / "shard-000009.tar").write_bytes((out / manifest.shards[0].name).read_bytes())
    (out / "shard-000004.tar.partial").write_bytes(b"half")
    assert main(["shards", "inspect", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out / manifest.shards[3].name}: missing" in err
    assert f"{out}/shard-000009.tar: a .tar the manifest does not list" in err
    assert f"{out}/shard-000004.tar.partial: a leftover partial file" in err
    assert "3 problem(s)" in err


# -- community shards ---------------------------------------------------------------------------------------
def _img2dataset_shard(path: Path, images: list[Path], captions: list[str]) -> None:
    """A shard laid out exactly as img2dataset writes one: KEY.jpg, KEY.txt, KEY.json per sample (9-digit keys)."""
    with tarfile.open(path, "w") as tar:
        for i, (image, caption) in enumerate(zip(images, captions)):
            key = f"{i:09d}"
            meta = {"url": f"http://127.0.0.1/{image.name}", "key": key, "status": "success", "caption": caption,
                    "width": None, "height": None}
            for ext, data in (("jpg", image.read_bytes()), ("txt", caption.encode()),
                              ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_community_shards_load_and_train(shared_data: Path, tmp_path: Path, capsys):
    images = [shared_data / "biomed/medical_images/fundus/retina.jpg",
              shared_data / "remote_sensing/images/rsicd/square_102.jpg",
              shared_data / "remote_sensing/images/rsicd/airport_17.jpg"]
    captions = ["a fundus photograph", "an aerial view of a square", "an airport from above"]
    folder = tmp_path / "img2dataset"
    folder.mkdir()
    for n in range(2):
        _img2dataset_shard(folder / f"{n:05d}.tar", images * 2, captions * 2)

    from clipzoo.core.data.loader import _decoder
    from clipzoo.core.data.transforms import SampleTransform
    from clipzoo.core.models import create_model

    samples = [_decoder()(s) for s in iter_samples(resolve_shards(f"glob:{folder}/*.tar"))]
    assert [s["__key__"] for s in samples[:3]] == ["000000000", "000000001", "000000002"]
    assert samples[0]["json"]["caption"] == "a fundus photograph" and samples[0]["jpg"].size == (1411, 1411)
    model = create_model(MICRO_MODEL)
    entry = SampleTransform(model.preprocess, train=False)(samples[1])
    assert entry["image"].shape == (3, 32, 32) and entry["text"].shape == (24,)

    assert main(_train_cli(tmp_path, str(folder), allow_unmanifested=True)) == 0
    assert "trained 3 steps (12 samples" in capsys.readouterr().out


def test_no_image_field_is_said_plainly(tmp_path: Path):
    with ShardWriter(tmp_path / "text-only", max_count=10) as writer:
        for i in range(12):
            writer.write({"__key__": f"t{i}", "txt": f"caption {i}", "cls": i % 2, "json": {}})
    from clipzoo.core.data.transforms import SampleTransform
    from clipzoo.core.models import create_model

    transform = SampleTransform(create_model(MICRO_MODEL).preprocess, train=False)
    stream = ShardStream(resolve_shards(tmp_path / "text-only"), transform, StreamConfig(batch_size=4))
    with pytest.raises(ShardSetError, match=r"no sample had a image field: looked for image.png / .* / jpg / jpeg / "
                                            r"png / webp, the 12 samples read have members \['cls', 'json', 'txt'\]"):
        list(ResumableLoader(stream).epoch_batches())


def test_clipzoo_shards_read_by_open_clip_train_pipeline(tmp_path: Path):
    """open_clip_train's get_wds_dataset: decode('pilrgb').rename(image='jpg;png;jpeg;webp', text='txt')."""
    import argparse

    import webdataset as wds

    from clipzoo.core.ingest import run_ingest
    from clipzoo.core.sources import SyntheticSource

    out = tmp_path / "clipzoo-shards"
    run_ingest(SyntheticSource(argparse.Namespace(count=30, seed=2, split="train", image_size=32)), [], out,
               max_count=12, progress=False)
    urls = resolve_shards(out)
    pipeline = (wds.WebDataset(urls, shardshuffle=False).decode("pilrgb")
                .rename(image="jpg;png;jpeg;webp", text="txt").to_tuple("image", "text"))
    pairs = list(pipeline)
    assert len(pairs) == Manifest.load(out).num_samples == 30
    assert all(image.size == (32, 32) and image.mode == "RGB" and text for image, text in pairs)
