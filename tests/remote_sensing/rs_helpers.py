"""Helpers for the remote_sensing tests: source options with the CLI's defaults, shard reading.

A module of its own (not ``conftest``): other test folders have a ``conftest.py`` too, and ``from conftest
import ...`` would get whichever one the session imported first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def make_options(source_cls, **overrides) -> argparse.Namespace:
    """The namespace ``clipzoo ingest remote_sensing <source>`` would build, defaults included."""
    return source_cls.default_options(**overrides)


def read_shards(folder: Path) -> list[dict]:
    """All samples of a shard folder, decoded (numpy arrays, parsed JSON, PIL images as bytes)."""
    import webdataset as wds

    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    urls = [str(Path(folder) / s["name"]) for s in manifest["shards"]]
    if not urls:
        return []
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode())
