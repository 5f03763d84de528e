"""The four distributions work as wheels, with no checkout: recipes and package data travel inside them.

The wheels are built from the checkout and installed (without dependencies) into a fresh virtual environment
outside it. The dependencies (torch, open_clip, mlflow, ...) come from this project's environment through a path
line in a ``.pth`` file: a plain path line adds that folder to ``sys.path`` without running the editable-install
hooks in it, so ``clipzoo`` itself is imported from the wheels (checked) while nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["core", "biomed", "remote_sensing", "astro"]


@pytest.mark.slow
def test_wheels_without_a_checkout_list_every_recipe_and_run_the_synthetic_one(tmp_path):
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    sources = tmp_path / "src"  # built from a copy: building in place would leave build/ folders in the checkout
    for name in PACKAGES:
        shutil.copytree(REPO / "packages" / name, sources / name,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    *(str(sources / p) for p in PACKAGES)], check=True, cwd=tmp_path, timeout=300)
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 4, wheels
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    *map(str, wheels)], check=True, cwd=tmp_path, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_clipzoo_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("CLIPZOO_SHARED_DATA", "PYTHONPATH")}
    env.update(CLIPZOO_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)

    where = run(str(python), "-c", "import json, clipzoo.core, clipzoo.biomed; "
                "print(json.dumps([clipzoo.core.__file__, clipzoo.biomed.__file__]))")
    assert where.returncode == 0, where.stderr
    assert all(f.startswith(site) for f in json.loads(where.stdout)), where.stdout  # the wheels, not the checkout

    listed = run(str(venv / "bin" / "clipzoo"), "pipeline", "list")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert {"synthetic", "biomed", "remote_sensing", "astro"} <= names, listed.stdout
    assert str(REPO) not in listed.stdout  # every recipe listed is a file inside an installed package

    ran = run(str(venv / "bin" / "clipzoo"), "pipeline", "run", "synthetic", "--workdir", str(work / "runs"),
              "--train.max_steps=4", "--train.max_time_s=null", "--train.checkpoint_every=4")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert "core/synthetic-retrieval" in ran.stdout
    assert (work / "runs" / "synthetic" / "train" / "model").is_dir()
