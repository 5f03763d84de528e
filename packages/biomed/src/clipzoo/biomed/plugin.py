"""Entry point ``clipzoo.plugins: biomed``: registers the biomed sources, model configs and benchmark tasks.

Cheap to import: the source classes pull in lxml/pydicom/MONAI only inside their methods, the task
factories import core's bench module only when a task is built.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def register_models(registry) -> None:
    """Only what building a model needs (its model configs): ``create_model`` runs this, not :func:`register`."""
    registry.add_model_config_dir(CONFIG_DIR)


def register(registry) -> None:
    from clipzoo.biomed.sources import DicomSource, ImagesSource, JatsSource, NiftiSource
    from clipzoo.biomed.tasks import register_tasks

    for source in (JatsSource, DicomSource, NiftiSource, ImagesSource):
        registry.add_source(source)
    register_models(registry)
    registry.add_metadata_entries("biomed", Path(__file__).parent / "metadata" / "entries.txt")  # curate balance
    registry.add_pipeline("biomed", Path(__file__).parent / "pipelines" / "biomed.yaml")  # its demo recipe
    register_tasks(registry)
