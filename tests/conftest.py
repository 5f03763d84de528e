"""Shared test fixtures: where the real third-party files live, and a quiet, offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# No test may reach a model hub; everything loads from local paths.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def _shared_data() -> Path:
    env = os.environ.get("CLIPZOO_SHARED_DATA")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not (path / "PROVENANCE.md").is_file():
        raise RuntimeError(
            f"shared test data not found at {path}: set CLIPZOO_SHARED_DATA to the folder holding PROVENANCE.md"
        )
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only folder of real third-party files described by its PROVENANCE.md."""
    return _shared_data()
