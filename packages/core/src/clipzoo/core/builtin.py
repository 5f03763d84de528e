"""Core's own registrations, made through the same plugin registry the domain packages use."""

from __future__ import annotations

from pathlib import Path

from clipzoo.core.plugins import PluginRegistry

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"


def register_models(registry: PluginRegistry) -> None:
    """What building a model needs: core's tower types and model configs (no sources, no bench tasks)."""
    from clipzoo.core.models.towers import register_builtin_towers

    registry.add_model_config_dir(MODEL_CONFIG_DIR)
    register_builtin_towers(registry)


def register(registry: PluginRegistry) -> None:
    from clipzoo.core.bench import register_core_tasks
    from clipzoo.core.sources import ImagesSource, SyntheticSource

    register_models(registry)
    registry.add_pipeline("synthetic", Path(__file__).parent / "pipelines" / "synthetic.yaml")
    registry.add_source(ImagesSource)
    registry.add_source(SyntheticSource)
    register_core_tasks(registry)
