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


@pytest.fixture
def shard_members():
    """``shard_members(out) -> {member name: bytes}`` over every shard the manifest lists, each checked against
    its recorded size and sha256: a shard set's exact samples, wherever (in which shard) they landed."""
    import hashlib
    import io
    import json
    import tarfile

    def members(out: Path) -> dict[str, bytes]:
        found = {}
        for shard in json.loads((out / "manifest.json").read_text())["shards"]:
            data = (out / shard["name"]).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (shard["bytes"], shard["sha256"]), shard["name"]
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                found.update((m.name, tar.extractfile(m).read()) for m in tar)
        return found

    return members


@pytest.fixture
def lose_unit():
    """``lose_unit(out, unit)``: leave the finished shard set ``out`` as a run killed while reading work unit
    ``unit`` would: that unit's done record and shards gone, and no manifest (the commit record comes last)."""
    import json

    def lose(out: Path, unit: int) -> None:
        record = json.loads((out / "_units" / f"u{unit:05d}.json").read_text())
        for shard in record["shards"]:
            (out / shard["name"]).unlink()
        (out / "_units" / f"u{unit:05d}.json").unlink()
        (out / "manifest.json").unlink()

    return lose


@pytest.fixture(autouse=True)
def _plugin_registry_restored():
    """Put the process-wide plugin registry back as it was before each test, so test order cannot matter.

    ``clipzoo.core.plugins.get_registry()`` is one registry per process (what the CLI and the harness look names up
    in); a test that adds a tower or task to it would otherwise leak that name into every later test. The registry
    object stays the same (module-scoped fixtures may hold it); its tables are restored in place. A registry a test
    created is dropped again (the next ``get_registry()`` loads a fresh one, a few milliseconds).
    """
    import copy
    from dataclasses import fields

    from clipzoo.core import plugins

    registry = plugins._REGISTRY
    saved = {f.name: copy.copy(getattr(registry, f.name)) for f in fields(registry)} if registry is not None else None
    yield
    if registry is None:
        plugins._REGISTRY = None
        return
    plugins._REGISTRY = registry
    for name, value in saved.items():
        setattr(registry, name, copy.copy(value))


@pytest.fixture()
def plugin_registry(_plugin_registry_restored):
    """The process-wide plugin registry, loaded, for a test that registers something (undone after the test)."""
    from clipzoo.core.plugins import get_registry

    return get_registry()
