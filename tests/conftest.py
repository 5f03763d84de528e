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
