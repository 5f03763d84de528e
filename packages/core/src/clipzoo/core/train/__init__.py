"""The clipzoo trainer: YAML config -> model, data, optimiser, DeepSpeed ZeRO or torch DDP backend.

Import-light: ``from clipzoo.core.train import load_config, train`` imports torch only when ``train`` runs.
"""

from clipzoo.core.train.config import Config, ConfigError, load_config


def train(cfg, **kwargs):
    from clipzoo.core.train.loop import train as _train

    return _train(cfg, **kwargs)


__all__ = ["Config", "ConfigError", "load_config", "train"]
