"""``register(registry)``: the astro domain's ingest sources, model configs and benchmark tasks.

Cheap to import: the registered classes and factories import numpy/astropy/torch when they run. The
towers of the ``astrom3-tiny`` config are core's (``sequence_transformer``, ``conv1d``, ``mlp``).
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def register_models(registry) -> None:
    """Only what building a model needs (its model configs): ``create_model`` runs this, not :func:`register`."""
    registry.add_model_config_dir(CONFIG_DIR)


def register(registry) -> None:
    from clipzoo.astro.sources import CatalogSource, CrossmatchSource, LightCurvesSource, SimulatedSource, SpectraSource
    from clipzoo.astro.tasks import TASKS

    for source in (LightCurvesSource, SpectraSource, CatalogSource, CrossmatchSource, SimulatedSource):
        registry.add_source(source)
    for name, factory in TASKS.items():
        registry.add_task(name, factory)
    register_models(registry)
    registry.add_metadata_entries("astro", Path(__file__).parent / "metadata" / "entries.txt")  # curate balance
    registry.add_pipeline("astro", Path(__file__).parent / "pipelines" / "astro.yaml")  # its demo recipe
