"""Catalogues: Gaia ``gaia_source`` rows (TAP JSON, ECSV, VOTable, FITS), the K2 Variable Catalogue, and
the metadata feature vector with its standardisation statistics and missing-value mask.

The feature vector (:data:`FEATURES`) is the same for every catalogue so that rows of different
catalogues cross-matched to one star fill one vector; what a catalogue does not provide stays missing
(mask False). Standardisation statistics (per-feature mean and standard deviation over the rows that
have the value) are computed once and stored (manifest notes, model ``preprocess``) so new data can be
transformed the same way.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipzoo.astro.errors import AstroReadError

GAIA_LICENSE = "CC-BY-SA-3.0-IGO (ESA/Gaia/DPAC)"
K2VARCAT_LICENSE = "no explicit license; K2 Variable Catalogue (Armstrong et al. 2016), MAST HLSP, public"

# name -> description; order is the order in metadata.npy
FEATURES: dict[str, str] = {
    "g_mag": "Gaia G mean magnitude (or mission magnitude Kp/Tmag when no Gaia row)",
    "bp_rp": "Gaia BP-RP colour",
    "g_rp": "Gaia G-RP colour",
    "abs_g": "absolute G magnitude, G + 5 log10(parallax/100 mas), parallax > 0 only",
    "parallax": "parallax [mas]",
    "pmra": "proper motion in RA [mas/yr]",
    "pmdec": "proper motion in Dec [mas/yr]",
    "gal_b": "galactic latitude [deg]",
    "ruwe": "Gaia renormalised unit weight error",
    "log_period": "log10 variability period [d]",
    "amplitude": "variability amplitude [%] (K2VarCat; eclipse depth for EBs)",
    "range_pct": "max-min range of the binned light curve [% of median flux] (K2VarCat)",
    "teff": "effective temperature [K] (Gaia GSP-Phot or mission header)",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)

K2VARCAT_CLASSES: tuple[str, ...] = ("AP", "QP", "P", "EB")
K2VARCAT_CLASS_NAMES = {"AP": "aperiodic", "QP": "quasi-periodic", "P": "periodic (sinusoidal)",
                        "EB": "eclipsing binary"}

# Gaia TAP JSON datatypes -> numpy dtypes
_TAP_DTYPES = {"long": np.int64, "int": np.int32, "short": np.int16, "unsignedByte": np.uint8, "double": np.float64,
               "float": np.float32, "boolean": bool, "char": object, "unicodeChar": object}


# ------------------------------------------------------------------------------------------------
# Gaia
# ------------------------------------------------------------------------------------------------
def _tap_value(value, dtype):
    """One TAP JSON cell as the column's type; raises ValueError/TypeError when it is not one."""
    if value is None:
        return None
    if dtype is object:
        return str(value)
    if dtype is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean")
        return value
    if np.issubdtype(dtype, np.integer):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _table_from_tap_json(path: Path, errors: list[tuple[int, str]]):
    from astropy.table import MaskedColumn, Table

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AstroReadError(f"not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or "metadata" not in doc or "data" not in doc:
        raise AstroReadError("JSON is not a TAP result: expected {'metadata': [...], 'data': [...]}")
    columns = doc["metadata"]
    dtypes = [_TAP_DTYPES.get(col.get("datatype"), object) for col in columns]
    rows = []
    for i, row in enumerate(doc["data"], start=1):  # a row that does not parse is reported, the rest goes on
        if not isinstance(row, list) or len(row) != len(columns):
            errors.append((i, f"data row has {len(row) if isinstance(row, list) else 'no list of'} values, "
                              f"the metadata defines {len(columns)} columns"))
            continue
        try:
            rows.append([_tap_value(v, dt) for v, dt in zip(row, dtypes)])
        except (TypeError, ValueError) as exc:
            errors.append((i, f"data row does not parse: {exc}"))
    if not rows:
        raise AstroReadError(f"no parsable data row ({len(errors)} rejected)")
    table = Table()
    for j, (col, dtype) in enumerate(zip(columns, dtypes)):
        values = [r[j] for r in rows]
        missing = np.array([v is None for v in values], bool)
        if dtype is object:
            data = np.array(["" if v is None else v for v in values], dtype=str)
        else:
            fill = np.nan if dtype in (np.float32, np.float64) else 0
            data = np.array([fill if v is None else v for v in values], dtype)
        table[col["name"]] = MaskedColumn(data, mask=missing, unit=col.get("unit"), description=col.get("description"))
    return table


def read_gaia_table(path: str | Path, errors: list[tuple[int, str]] | None = None):
    """A Gaia ``gaia_source`` result as an astropy Table with missing values masked.

    Formats by suffix: ``.json`` (TAP JSON: ``{"metadata": [column defs], "data": [rows]}``), ``.ecsv``,
    ``.vot``/``.xml``/``.votable`` (VOTable), ``.fits``/``.fit``, ``.csv`` (with header). TAP JSON rows that
    do not parse are left out and appended to ``errors`` as ``(row number, reason)``.
    """
    from astropy.table import Table

    path = Path(path)
    suffix = "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".vot.xml") else path.suffix.lower()
    if suffix == ".json":
        table = _table_from_tap_json(path, errors if errors is not None else [])
    else:
        fmt = {".ecsv": "ascii.ecsv", ".vot": "votable", ".xml": "votable", ".votable": "votable",
               ".vot.xml": "votable",
               ".fits": "fits", ".fit": "fits", ".csv": "ascii.csv"}.get(suffix)
        if fmt is None:
            raise AstroReadError(f"unknown catalogue format {path.suffix!r} "
                                 "(use .json, .ecsv, .vot/.xml, .fits or .csv)")
        try:
            table = Table.read(path, format=fmt)
        except Exception as exc:  # astropy's readers raise many exception types
            raise AstroReadError(f"cannot read {fmt} table ({type(exc).__name__}: {exc})") from exc
    if "source_id" not in table.colnames:
        lower = {c.lower(): c for c in table.colnames}
        if "source_id" in lower:
            table.rename_column(lower["source_id"], "source_id")
        else:
            raise AstroReadError(f"Gaia table lacks a source_id column; it has {', '.join(table.colnames[:20])}")
    return table


def _cell(row, name: str) -> float | None:
    if name not in row.colnames:
        return None
    value = row[name]
    if np.ma.is_masked(value):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def gaia_row_record(row, path: Path) -> dict[str, Any]:
    """Identifiers, position and raw feature values of one Gaia row."""
    values: dict[str, float | None] = {
        "g_mag": _cell(row, "phot_g_mean_mag"),
        "bp_rp": _cell(row, "bp_rp"),
        "g_rp": _cell(row, "g_rp"),
        "parallax": _cell(row, "parallax"),
        "pmra": _cell(row, "pmra"),
        "pmdec": _cell(row, "pmdec"),
        "gal_b": _cell(row, "b"),
        "ruwe": _cell(row, "ruwe"),
        "teff": _cell(row, "teff_gspphot"),
    }
    if values["bp_rp"] is None and None not in (_cell(row, "phot_bp_mean_mag"), _cell(row, "phot_rp_mean_mag")):
        values["bp_rp"] = _cell(row, "phot_bp_mean_mag") - _cell(row, "phot_rp_mean_mag")
    ra, dec = _cell(row, "ra"), _cell(row, "dec")
    if values["gal_b"] is None and ra is not None and dec is not None:
        values["gal_b"] = galactic_latitude(ra, dec)
    if values["g_mag"] is not None and values["parallax"] is not None and values["parallax"] > 0:
        values["abs_g"] = values["g_mag"] + 5.0 * math.log10(values["parallax"] / 100.0)
    ids = {"gaia_source_id": int(row["source_id"])}
    designation = str(row["designation"]).strip() if "designation" in row.colnames else None
    return {"ids": ids, "ra": ra, "dec": dec, "features": values, "catalog": "gaia",
            "meta": {"designation": designation, "source": str(path), "license": GAIA_LICENSE}}


def galactic_latitude(ra: float, dec: float) -> float:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    return float(SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic.b.deg)


# ------------------------------------------------------------------------------------------------
# K2 Variable Catalogue
# ------------------------------------------------------------------------------------------------
@dataclass
class K2VarRow:
    epic: int
    label: str  # stripped class label
    range_pct: float
    period: float | None  # days; None for aperiodic (catalogue writes 0)
    amplitude: float | None  # %; None when the catalogue writes 0 for aperiodic
    proposals: str
    extra: list[float] = field(default_factory=list)
    line: int = 0


def parse_k2varcat_line(fields: list[str], line: int) -> K2VarRow:
    """One headerless K2VarCat row: EPIC, class, range [%], period [d], amplitude [%], then, depending on
    the campaign's release, a proposal note (free text, may be empty) and trailing numeric columns.
    Raises ValueError with the reason when the row does not parse."""
    if len(fields) < 5:
        raise ValueError(f"{len(fields)} column(s); a K2VarCat row has at least 5 "
                         "(EPIC, class, range, period, amplitude)")
    epic_text, label = fields[0].strip(), fields[1].strip()
    if not epic_text.isdigit():
        raise ValueError(f"EPIC id {epic_text!r} is not an integer")
    if not label or not label.replace("_", "").isalnum():
        raise ValueError(f"class label {fields[1]!r} is empty or not alphanumeric")
    try:
        range_pct, period, amplitude = (float(v) for v in fields[2:5])
    except ValueError as exc:
        raise ValueError(f"range/period/amplitude not numeric ({exc})") from None
    tail = fields[5:]
    extra: list[float] = []
    while tail and len(extra) < 2:  # trailing numbers (campaigns 0/1 carry two more columns)
        try:
            extra.insert(0, float(tail[-1]))
        except ValueError:
            break
        tail = tail[:-1]
    proposals = ",".join(tail).strip()
    return K2VarRow(int(epic_text), label, range_pct, period if period > 0 else None,
                    amplitude if period > 0 or amplitude > 0 else None, proposals, extra, line)


def read_k2varcat(path: str | Path) -> tuple[list[K2VarRow], list[tuple[int, str]]]:
    """All rows of a K2VarCat CSV -> (rows, [(line number, reason) for rows that did not parse])."""
    path = Path(path)
    rows: list[K2VarRow] = []
    errors: list[tuple[int, str]] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for n, fields in enumerate(csv.reader(fh), start=1):
                if not fields or all(not f.strip() for f in fields):
                    continue
                try:
                    rows.append(parse_k2varcat_line(fields, n))
                except ValueError as exc:
                    errors.append((n, str(exc)))
    except UnicodeDecodeError as exc:
        raise AstroReadError(f"not a text CSV ({exc})") from exc
    if not rows:
        raise AstroReadError(f"no parsable K2VarCat row ({len(errors)} rejected)")
    return rows, errors


def k2varcat_record(row: K2VarRow, path: Path) -> dict[str, Any]:
    values = {"log_period": math.log10(row.period) if row.period else None, "amplitude": row.amplitude,
              "range_pct": row.range_pct}
    meta = {"source": str(path), "line": row.line, "license": K2VARCAT_LICENSE, "k2var_class": row.label,
            "range_pct": row.range_pct, "period": row.period, "proposals": row.proposals or None}
    return {"ids": {"epic": row.epic}, "ra": None, "dec": None, "features": values, "catalog": "k2varcat",
            "label": row.label, "meta": meta}


def looks_like_k2varcat(path: Path) -> bool:
    """Headerless CSV whose first row starts with an integer EPIC id and a short class label."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            first = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    return len(first) >= 5 and first[0].strip().isdigit() and first[1].strip().isalpha()


def read_catalog_records(path: str | Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Records (ids, ra/dec, raw feature values, meta, label) of any supported catalogue file."""
    from clipzoo.astro.datalink import check_continuous, datalink_product, mcmc_record

    path = Path(path)
    found = datalink_product(path)
    if found is not None and found[0].startswith("MCMC_"):
        return [mcmc_record(path)], []
    if found is not None and found[0] == "XP_CONTINUOUS":
        check_continuous(path)
    if path.suffix.lower() == ".csv" and looks_like_k2varcat(path):
        rows, errors = read_k2varcat(path)
        return [k2varcat_record(r, path) for r in rows], errors
    errors: list[tuple[int, str]] = []
    table = read_gaia_table(path, errors)
    return [gaia_row_record(row, path) for row in table], errors


# ------------------------------------------------------------------------------------------------
# feature vectors
# ------------------------------------------------------------------------------------------------
@dataclass
class FeatureStats:
    """Per-feature mean/std over the rows that have the value; stored so new data is transformed alike."""

    names: tuple[str, ...]
    mean: list[float]
    std: list[float]
    count: list[int]

    @classmethod
    def fit(cls, raw: np.ndarray, mask: np.ndarray, names: tuple[str, ...] = FEATURE_NAMES) -> "FeatureStats":
        mean, std, count = [], [], []
        for j in range(raw.shape[1]):
            col = raw[mask[:, j], j]
            count.append(int(col.size))
            mean.append(float(col.mean()) if col.size else 0.0)
            s = float(col.std()) if col.size > 1 else 0.0
            std.append(s if s > 0 else 1.0)
        return cls(tuple(names), mean, std, count)

    def transform(self, raw: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = (raw - np.asarray(self.mean)) / np.asarray(self.std)
        return np.where(mask, out, 0.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": self.mean, "std": self.std, "count": self.count}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureStats":
        return cls(tuple(d["names"]), list(d["mean"]), list(d["std"]), list(d.get("count", [0] * len(d["names"]))))

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        """From a feature_stats JSON, or the manifest.json of an ingest that stored them in its notes."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data = data.get("ingest", {}).get("notes", data) if "ingest" in data else data
        if "feature_stats" in data:
            data = data["feature_stats"]
        if "names" not in data:
            raise ValueError(f"{path}: holds no feature_stats (expected a manifest.json from an astro ingest)")
        return cls.checked(data, str(path))

    @classmethod
    def checked(cls, data: dict[str, Any], where: str) -> "FeatureStats":
        """From a ``to_dict`` mapping, refusing one whose features are not this version's (``where`` names it)."""
        try:
            stats = cls.from_dict(data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{where}: not feature statistics ({type(exc).__name__}: {exc})") from None
        if stats.names != FEATURE_NAMES:
            raise ValueError(f"{where}: feature names {stats.names} differ from this version's {FEATURE_NAMES}")
        return stats


def raw_feature_vector(values: dict[str, float | None]) -> tuple[np.ndarray, np.ndarray]:
    """Raw values in :data:`FEATURE_NAMES` order and their presence mask."""
    raw = np.zeros(len(FEATURE_NAMES))
    mask = np.zeros(len(FEATURE_NAMES), bool)
    for j, name in enumerate(FEATURE_NAMES):
        v = values.get(name)
        if v is not None and math.isfinite(v):
            raw[j], mask[j] = v, True
    return raw, mask


def merge_feature_values(parts: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Combine the feature values of several records of one star (first non-missing value wins)."""
    merged: dict[str, float | None] = {}
    for values in parts:
        for k, v in values.items():
            if merged.get(k) is None and v is not None:
                merged[k] = v
    return merged


def standardise_records(values: list[dict[str, float | None]], stats: FeatureStats | None = None
                        ) -> tuple[np.ndarray, np.ndarray, FeatureStats]:
    """Feature vectors ``[N, F]`` (standardised, 0 where missing), masks ``[N, F]`` and the stats used
    (fitted on these rows unless ``stats`` is given)."""
    raws, masks = zip(*(raw_feature_vector(v) for v in values)) if values else ((), ())
    raw = np.array(raws).reshape(len(values), len(FEATURE_NAMES))
    mask = np.array(masks, bool).reshape(len(values), len(FEATURE_NAMES))
    stats = stats or FeatureStats.fit(raw, mask)
    return stats.transform(raw, mask), mask, stats


# ------------------------------------------------------------------------------------------------
# reading many files (the ingest sources' reader) and catalogue periods
# ------------------------------------------------------------------------------------------------
def read_catalog_files(paths: list[Path], report) -> list:
    """Catalogue files -> one cross-match :class:`~clipzoo.astro.crossmatch.Record` per row; unreadable
    files and rows that do not parse are skipped on ``report``."""
    from tqdm import tqdm

    from clipzoo.astro.crossmatch import Record

    records = []
    for path in tqdm(paths, desc="read catalogues", unit="file", leave=False, disable=len(paths) < 20):
        report.input_seen(path)
        try:
            rows, errors = read_catalog_records(path)
        except AstroReadError as exc:
            report.skip(path, str(exc))
            continue
        for line, reason in errors:
            report.skip(f"{path}:{line}", f"row does not parse: {reason}", kind="row")
        for row in rows:
            report.count("catalog", row["catalog"])
            records.append(Record("metadata", row["catalog"], row["ids"], row["ra"], row["dec"], row["features"],
                                  row["meta"], row.get("label")))
    return records


def load_periods(path: Path) -> dict[str, float]:
    """``{"epic:201...": period}`` from a K2VarCat CSV or a headed CSV with ``period`` and an id column."""
    if not path.is_file():
        raise AstroReadError(f"--periods {path}: no such file")
    if looks_like_k2varcat(path):
        rows, _ = read_k2varcat(path)
        return {f"epic:{r.epic}": r.period for r in rows if r.period}
    out: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = {c.lower(): c for c in reader.fieldnames or []}
        key = next((k for k in ("kic", "epic", "tic") if k in cols), None)
        if "period" not in cols or key is None:
            raise AstroReadError(f"--periods {path}: needs a header with 'period' and one of kic/epic/tic; "
                                 f"has {reader.fieldnames}")
        for row in reader:
            try:
                out[f"{key}:{int(row[cols[key]])}"] = float(row[cols["period"]])
            except (TypeError, ValueError):
                continue
    return out
