"""img2dataset end to end: download real images from a local http.server into webdataset shards, train on them as is.

img2dataset 1.47.0 pins ``webdataset<0.3`` (this project pins 1.0.2) and pulls opencv, albumentations and wandb,
so it lives in its own environment, ``.venv-img2dataset`` (``make setup`` creates it from
``constraints-img2dataset.txt``); the test runs its console script as a subprocess. Its output has no clipzoo
manifest, so the trainer reads it with the explicit opt-in ``data.allow_unmanifested: true``.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from clipzoo.core.train import load_config, train

REPO_ROOT = Path(__file__).resolve().parents[2]
IMG2DATASET = REPO_ROOT / ".venv-img2dataset" / "bin" / "img2dataset"
SOURCES = [  # real images and what they show
    ("remote_sensing/images/rsicd/airport_17.jpg", "an airport with runways seen from above"),
    ("remote_sensing/images/rsicd/square_102.jpg", "a city square seen from above"),
    ("biomed/medical_images/fundus/retina.jpg", "a fundus photograph of a retina"),
    ("biomed/medical_images/pathology/ihc.png", "immunohistochemistry stained tissue"),
    ("biomed/jats_packages/elife-19405/elife-19405-fig1.tif", "a multi-panel figure from a biology paper"),
]
MICRO_MODEL = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture()
def image_server(shared_data, tmp_path):
    """An http.server on 127.0.0.1 (free port) serving the real images, byte for byte; stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()
    for i, (rel, _) in enumerate(SOURCES):
        source = shared_data / rel
        (root / f"{i}{source.suffix.lower()}").write_bytes(source.read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", sorted(root.iterdir())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.slow
def test_img2dataset_output_trains_without_conversion(image_server, tmp_path):
    import pandas as pd

    if not IMG2DATASET.is_file():
        pytest.fail(f"{IMG2DATASET} is missing: run 'make setup', which creates the img2dataset side environment")
    base, files = image_server
    rows = [{"url": f"{base}/{path.name}", "caption": caption} for path, (_, caption) in zip(files, SOURCES)]
    rows.append({"url": f"{base}/missing.jpg", "caption": "a 404 that img2dataset records as failed"})
    urls = tmp_path / "urls.parquet"
    pd.DataFrame(rows).to_parquet(urls)
    out = tmp_path / "i2d"
    done = subprocess.run(
        [str(IMG2DATASET), f"--url_list={urls}", "--input_format=parquet", "--url_col=url", "--caption_col=caption",
         "--output_format=webdataset", f"--output_folder={out}", "--image_size=64", "--resize_mode=border",
         "--processes_count=1", "--thread_count=2", "--number_sample_per_shard=3", "--enable_wandb=False",
         "--distributor=multiprocessing", "--timeout=10", "--retries=0"],
        capture_output=True, text=True, timeout=300, env={"NO_ALBUMENTATIONS_UPDATE": "1", "PATH": "/usr/bin:/bin",
                                                          "WANDB_MODE": "disabled", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    shards = sorted(out.glob("*.tar"))
    members = [m for shard in shards for m in tarfile.open(shard).getnames()]
    assert len(shards) == 2 and len([m for m in members if m.endswith(".jpg")]) == len(SOURCES)  # the 404 is not
    assert {m.rsplit(".", 1)[1] for m in members} == {"jpg", "txt", "json"}  # community member names
    assert not (out / "manifest.json").exists()

    run = tmp_path / "run"
    cfg = load_config(base={
        "run": {"output_dir": str(run), "mlflow": False, "log_every": 1, "progress": False, "seed": 3},
        "model": {"config": MICRO_MODEL},
        "data": {"train": str(out), "allow_unmanifested": True, "batch_size": 2, "workers": 0, "shuffle_buffer": 4,
                 "split": "samples"},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "train": {"max_steps": 4, "checkpoint_every": 100},
    })
    result = train(cfg)
    assert result.steps == 4 and result.samples_seen == 8
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert len(losses) == 4 and all(loss == loss and loss > 0 for loss in losses)
    assert result.model_dir is not None and (result.model_dir / "model.safetensors").is_file()
