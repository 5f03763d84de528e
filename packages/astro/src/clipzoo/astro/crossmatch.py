"""Cross-match records of several modalities into per-star groups: by identifier, then by sky position.

A :class:`Record` is one light curve, spectrum or catalogue row with its identifiers (``kic``, ``epic``,
``tic``, ``gaia_source_id``, ``targetid``) and, when known, its position. :func:`crossmatch` joins
records that share any identifier, then joins groups whose positions lie within ``radius_arcsec``
(astropy ``SkyCoord.search_around_sky``), closest pairs first, never putting two records of the same
modality and catalogue into one group. It returns the groups and match statistics for the manifest.
:func:`classify_input` routes the cross-match source's inputs to the light-curve, spectrum and catalogue
readers from each file's own structure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODALITIES = ("lightcurve", "spectrum", "metadata")
FITS_SUFFIXES = (".fits", ".fits.gz", ".fit")
TABLE_SUFFIXES = (".json", ".ecsv", ".vot", ".xml", ".votable", ".csv")


@dataclass
class Record:
    modality: str  # one of MODALITIES
    catalog: str  # "kepler", "tess", "desi", "gaia_xp", "gaia", "k2varcat", ...
    ids: dict[str, int]
    ra: float | None = None
    dec: float | None = None
    payload: Any = None  # LightCurve / Spectrum / feature-value dict
    meta: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def kind(self) -> tuple[str, str]:
        return (self.modality, self.catalog)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def crossmatch(records: list[Record], radius_arcsec: float = 1.0) -> tuple[list[list[Record]], dict[str, Any]]:
    """Group ``records`` by shared identifiers, then by position within ``radius_arcsec``."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    n = len(records)
    uf = _UnionFind(n)
    # 1. identifiers
    first_with: dict[tuple[str, int], int] = {}
    id_joins = 0
    for i, rec in enumerate(records):
        for key, value in rec.ids.items():
            if value is None:
                continue
            j = first_with.setdefault((key, int(value)), i)
            if j != i and uf.union(i, j):
                id_joins += 1

    def groups_now() -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i in range(n):
            out.setdefault(uf.find(i), []).append(i)
        return out

    # 2. positions: one position per group (the first record that has one)
    pos_joins, separations = 0, []
    groups = groups_now()
    roots = [r for r, members in groups.items() if any(records[m].ra is not None for m in members)]
    if len(roots) > 1 and radius_arcsec > 0:
        ra = np.array([next(records[m].ra for m in groups[r] if records[m].ra is not None) for r in roots])
        dec = np.array([next(records[m].dec for m in groups[r] if records[m].ra is not None) for r in roots])
        coords = SkyCoord(ra=ra * u.deg, dec=dec * u.deg)
        i1, i2, sep, _ = coords.search_around_sky(coords, radius_arcsec * u.arcsec)
        pairs = sorted((s, a, b) for a, b, s in zip(i1, i2, sep.arcsec) if a < b)
        kinds = {r: Counter(records[m].kind for m in groups[r]) for r in roots}
        for s, a, b in pairs:
            ra_root, rb_root = uf.find(roots[a]), uf.find(roots[b])
            if ra_root == rb_root:
                continue
            ka, kb = kinds.get(ra_root, Counter()), kinds.get(rb_root, Counter())
            if set(ka) & set(kb):  # would put two light curves (or two Gaia rows...) of one survey together
                continue
            uf.union(ra_root, rb_root)
            kinds[uf.find(ra_root)] = ka + kb
            pos_joins += 1
            separations.append(float(s))

    grouped = [[records[m] for m in members] for members in groups_now().values()]
    combos = Counter("+".join(m for m in MODALITIES if any(r.modality == m for r in g)) for g in grouped)
    stats = {
        "records": dict(Counter(r.modality for r in records)),
        "records_by_catalog": dict(Counter(r.catalog for r in records)),
        "groups": len(grouped),
        "joined_by_id": id_joins,
        "joined_by_position": pos_joins,
        "radius_arcsec": radius_arcsec,
        "separation_arcsec": ({"min": min(separations), "median": float(np.median(separations)),
                               "max": max(separations)}
                              if separations else None),
        "modality_combinations": dict(sorted(combos.items())),
    }
    return grouped, stats


def classify_input(path: Path) -> str:
    """``desi`` (FITS with FIBERMAP), ``gaia_xp`` (a table with ``flux``/``flux_error`` array columns),
    ``lightcurve`` (other FITS) or ``catalog`` (other tables), from the file's own structure."""
    import re

    from clipzoo.astro.datalink import SPECTRUM_PRODUCTS, datalink_product

    found = datalink_product(path)  # Gaia DataLink files say what they hold in their name
    if found is not None:
        product = found[0]
        if product in SPECTRUM_PRODUCTS or product == "XP_CONTINUOUS":
            return "gaia_xp"
        return "lightcurve" if product == "EPOCH_PHOTOMETRY" else "catalog"
    name = path.name.lower()
    if name.endswith(FITS_SUFFIXES):
        from astropy.io import fits

        try:
            with fits.open(path, memmap=False) as hdul:
                names = [h.name for h in hdul]
                if "FIBERMAP" in names:
                    return "desi"
                if len(hdul) > 1 and getattr(hdul[1], "columns", None) is not None:
                    cols = {c.lower() for c in hdul[1].columns.names}
                    if {"source_id", "flux", "flux_error"} <= cols:
                        return "gaia_xp"
        except Exception:  # unreadable: the light-curve reader reports the real reason
            return "desi" if "coadd" in name else "lightcurve"
        return "lightcurve"
    if name.endswith(".json"):
        return "catalog"
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(65536)
    except OSError:
        return "catalog"
    if name.endswith(".csv"):
        first = head.splitlines()[0] if head else ""
        cols = {c.strip().strip('"').lower() for c in first.split(",")}
        return "gaia_xp" if {"source_id", "flux", "flux_error"} <= cols else "catalog"
    # ECSV header ("- {name: flux_error, ...") or VOTable FIELD name="flux_error"
    if re.search(r"name:\s*flux_error\b", head) or re.search(r'name="flux_error"', head):
        return "gaia_xp"
    return "catalog"
