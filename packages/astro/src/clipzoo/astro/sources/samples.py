"""What every astro source does to turn records into shard samples: keys, JSON-safe metadata, class indices."""

from __future__ import annotations

from typing import Any

from clipzoo.core.ingest import IngestReport


def json_safe(value: Any) -> Any:
    """numpy scalars/arrays and NaN to plain JSON values."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def class_index(label: str | None, report: IngestReport) -> int | None:
    """The K2VarCat class index of ``label`` (counted on ``report``), None for no or an unknown label."""
    from clipzoo.astro.catalogs import K2VARCAT_CLASSES

    if label is None:
        return None
    if label in K2VARCAT_CLASSES:
        report.count("class", label)
        return K2VARCAT_CLASSES.index(label)
    report.count("class_not_in_vocabulary", label)
    return None


def ids_json(ids: dict[str, int]) -> dict[str, Any]:
    # 64-bit ids (Gaia source_id, DESI TARGETID) exceed JSON-safe integers for some readers: keep both forms
    return {k: int(v) for k, v in ids.items()} | {f"{k}_str": str(v) for k, v in ids.items() if abs(int(v)) > 2**53}


class Keys:
    """Unique sample keys; a second sample for one key is skipped with a reason rather than crashing."""

    def __init__(self):
        self.seen: set[str] = set()

    def claim(self, key: str, where: str, report: IngestReport) -> bool:
        if key in self.seen:
            report.skip(where, f"duplicate sample key {key} (same star given twice)", kind="duplicate")
            return False
        self.seen.add(key)
        return True


def where(meta: dict[str, Any]) -> str:
    """The file(s) a record came from, for skip messages (a stitched light curve has several)."""
    source = meta.get("source")
    return ", ".join(map(str, source)) if isinstance(source, (list, tuple)) else str(source)


def primary_key(ids: dict[str, int], fallback: str) -> str:
    """The sample key from the star's first known id (kic, epic, tic, gaia, targetid), else ``fallback``."""
    from clipzoo.core.data.writer import safe_key

    for k in ("kic", "epic", "tic", "gaia_source_id", "targetid"):
        if k in ids:
            return safe_key(k.replace("_source_id", ""), ids[k])
    return safe_key(fallback)
