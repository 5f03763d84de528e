"""Registrations of clipzoo-remote-sensing (entry point ``clipzoo.plugins: remote_sensing``).

Cheap to import: the sources module imports only core's ingest contract; rasterio, PIL, transformers
and torch are imported inside the functions that use them.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def register_models(registry) -> None:
    """Only what building a model needs (its model configs): ``create_model`` runs this, not :func:`register`."""
    registry.add_model_config_dir(CONFIG_DIR)


def register(registry) -> None:
    from clipzoo.remote_sensing.sources import CaptionsSource, GeoTiffSource, SimulatedScenesSource
    from clipzoo.remote_sensing.tasks import TASKS

    registry.add_source(CaptionsSource)
    registry.add_source(GeoTiffSource)
    registry.add_source(SimulatedScenesSource)
    for name, factory in TASKS.items():
        registry.add_task(name, factory)
    register_models(registry)
    registry.add_metadata_entries("remote_sensing", Path(__file__).parent / "metadata" / "entries.txt")  # curate balance
    registry.add_pipeline("remote_sensing", Path(__file__).parent / "pipelines" / "remote_sensing.yaml")  # its demo recipe
