"""Core's own registrations, made through the same plugin registry the domain packages use."""

from __future__ import annotations

from pathlib import Path

from clipzoo.core.plugins import PluginRegistry

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"


def register(registry: PluginRegistry) -> None:
    from clipzoo.core.bench import register_core_tasks
    from clipzoo.core.models.towers import register_builtin_towers
    from clipzoo.core.sources import ImagesSource, SyntheticSource

    registry.add_model_config_dir(MODEL_CONFIG_DIR)
    registry.add_pipeline("synthetic", Path(__file__).parent / "pipelines" / "synthetic.yaml")
    registry.add_source(ImagesSource)
    registry.add_source(SyntheticSource)
    register_builtin_towers(registry)
    register_core_tasks(registry)
