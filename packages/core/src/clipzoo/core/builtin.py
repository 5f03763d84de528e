"""Core's own registrations, made through the same plugin registry the domain packages use."""

from __future__ import annotations

from pathlib import Path

from clipzoo.core.plugins import PluginRegistry

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"


def register(registry: PluginRegistry) -> None:
    registry.add_model_config_dir(MODEL_CONFIG_DIR)
