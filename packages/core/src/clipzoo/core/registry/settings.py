"""Registry settings and templates from the repository's ``registry/`` folder.

The folder is found at ``$CLIPZOO_REGISTRY_DIR``, else as ``registry/`` in the clipzoo checkout this
package is installed from (an editable install), else in the working directory or one of its parents.
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
    here = Path(__file__).resolve()
    found = [parent / "registry" for parent in here.parents]
    found += [parent / "registry" for parent in [Path.cwd(), *Path.cwd().parents]]
    return found


def registry_dir() -> Path:
    """The folder holding ``settings.yaml`` and ``model_card.md.j2``."""
    tried = _candidates()
    for folder in tried:
        if (folder / SETTINGS_NAME).is_file() and (folder / CARD_TEMPLATE_NAME).is_file():
            return folder
    raise FileNotFoundError(
        f"no clipzoo registry folder ({SETTINGS_NAME} + {CARD_TEMPLATE_NAME}) found; looked in "
        f"{', '.join(str(p) for p in tried[:3])} ...; set CLIPZOO_REGISTRY_DIR to the repository's registry/ folder"
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
