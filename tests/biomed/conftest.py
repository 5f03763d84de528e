"""Helpers for the biomed tests: source options as the CLI would parse them, and reading shards back."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import pytest


def source_options(source_cls, **overrides) -> argparse.Namespace:
    """The namespace ``clipzoo ingest biomed <source>`` would build with defaults, plus ``overrides``."""
    return source_cls.default_options(**overrides)


def read_shards(out_dir: Path) -> dict[str, dict]:
    """``{key: {field: decoded value}}`` from every shard the manifest lists (json/txt decoded, images as PIL).

    Image members are returned under the field name the source yielded (``image.png``), whether the shard names
    them ``KEY.png`` (community layout) or ``KEY.image.png`` (earlier layout).
    """
    from PIL import Image

    manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
    samples: dict[str, dict] = {}
    for shard in manifest["shards"]:
        with tarfile.open(Path(out_dir) / shard["name"]) as tar:
            for member in tar:
                key, field = member.name.split(".", 1)
                if field in ("png", "jpg", "jpeg"):  # community layout (KEY.png): the source's field name back
                    field = f"image.{field}"
                data = tar.extractfile(member).read()
                if field.endswith("json"):
                    value = json.loads(data)
                elif field in ("txt", "cls"):
                    value = data.decode()
                elif field.startswith("image"):
                    value = Image.open(io.BytesIO(data))
                    value.load()
                else:
                    value = data
                samples.setdefault(key, {})[field] = value
    return samples


def no_partials(out_dir: Path) -> bool:
    return not any(p.name.endswith((".partial",)) or ".tmp" in p.name for p in Path(out_dir).iterdir())


@pytest.fixture
def ingest(tmp_path):
    """``ingest(SourceCls, inputs, out_name="out", **options) -> (summary, samples, out_dir)`` via core's run_ingest."""
    from clipzoo.core.ingest import run_ingest

    def run(source_cls, inputs, out_name="out", **overrides):
        out = tmp_path / out_name
        summary = run_ingest(source_cls(source_options(source_cls, **overrides)), list(inputs), out, progress=False)
        assert no_partials(out), sorted(p.name for p in out.iterdir())
        return summary, read_shards(out), out

    return run
