"""Model-card template and registry settings: the ``model_cards/`` folder shipped inside this package.

``$CLIPZOO_REGISTRY_DIR`` points at another folder holding the same two files (a team's own card template and
settings); otherwise the package's own copy is used, so a wheel install needs nothing beside it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

SETTINGS_NAME = "settings.yaml"
CARD_TEMPLATE_NAME = "model_card.md.j2"


def _candidates() -> list[Path]:
    env = os.environ.get("CLIPZOO_REGISTRY_DIR")
    if env:
        return [Path(env)]
    return [Path(__file__).resolve().parent / "model_cards"]


def registry_dir() -> Path:
    """The folder holding ``settings.yaml`` and ``model_card.md.j2``."""
    tried = _candidates()
    for folder in tried:
        if (folder / SETTINGS_NAME).is_file() and (folder / CARD_TEMPLATE_NAME).is_file():
            return folder
    raise FileNotFoundError(
        f"no clipzoo registry folder ({SETTINGS_NAME} + {CARD_TEMPLATE_NAME}) found; looked in "
        f"{', '.join(str(p) for p in tried[:3])} ...; set CLIPZOO_REGISTRY_DIR to a folder holding both"
    )


@functools.lru_cache(maxsize=4)
def _load(folder: str) -> dict[str, Any]:
    import yaml

    with open(Path(folder) / SETTINGS_NAME, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def settings() -> dict[str, Any]:
    """The parsed ``settings.yaml``."""
    return _load(str(registry_dir()))


def for_domain(key: str, domain: str | None) -> str:
    """A per-domain setting (``intended_use``, ``limitations``) with its ``default`` fallback."""
    table = settings().get(key) or {}
    return str(table.get(domain or "default") or table.get("default") or "")
