"""Ingest sources of the ``astro`` domain: ``lightcurves``, ``spectra``, ``catalog``, ``crossmatch``, ``simulated``.

``clipzoo ingest astro SOURCE INPUT... --out DIR``. Every sample follows docs/ARCHITECTURE.md:
``lightcurve.npy`` ``[L, 3]`` + ``lightcurve_mask.npy``, ``spectrum.npy`` ``[L, 2]`` + ``spectrum_mask.npy``,
``metadata.npy`` ``[F]`` + ``metadata_mask.npy``, ``json`` (ids, provenance, license, preprocessing) and
``cls`` when the star has a known class. Single-modality sources write their own modality only; the
cross-match source writes all three (zeros and an all-False mask for a missing one).

Module import is light (stdlib + core's ingest contract); numpy/astropy load inside ``samples``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any, Iterator

from clipzoo.core.ingest import IngestError, IngestReport, Source, expand_inputs

FITS_SUFFIXES = (".fits", ".fits.gz", ".fit")
TABLE_SUFFIXES = (".json", ".ecsv", ".vot", ".xml", ".votable", ".csv")


# ------------------------------------------------------------------------------------------------
# shared options
# ------------------------------------------------------------------------------------------------
def _lightcurve_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("light curves")
    g.add_argument("--flux-column", default="auto", choices=["auto", "PDCSAP_FLUX", "SAP_FLUX"],
                   help="flux column of *_lc/_llc files (auto: PDCSAP_FLUX when finite, else SAP_FLUX)")
    g.add_argument("--quality-bitmask", default="default",
                   help="cadences to mask by quality flag: none, default, hard, hardest (lightkurve's) or an integer")
    g.add_argument("--aperture", default="pipeline", choices=["pipeline", "threshold", "all"],
                   help="aperture for target-pixel/FFI cutouts (pipeline falls back to threshold when absent)")
    g.add_argument("--no-stitch", action="store_true", help="one sample per file instead of one per star")
    g.add_argument("--lc-length", type=int, default=None,
                   help="fixed light-curve length L, padded or binned (default: --model's, else 256)")
    g.add_argument("--fold", default=None, choices=["none", "catalog", "lombscargle", "auto"],
                   help="phase folding: by catalogue period (--periods), Lomb-Scargle, auto (catalogue, else LS); "
                        "default: --model's, else none")
    g.add_argument("--periods", type=Path, default=None,
                   help="periods for --fold catalog/auto: a K2VarCat CSV, or a CSV with a header holding "
                        "'period' and one of kic/epic/tic")


def _spectrum_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("spectra")
    g.add_argument("--grid-start", type=float, default=None,
                   help="common grid start [Å] (default: --model's, else 3600)")
    g.add_argument("--grid-stop", type=float, default=None,
                   help="common grid stop [Å] (default: --model's, else 9800)")
    g.add_argument("--grid-size", type=int, default=None, help="common grid length L (default: --model's, else 512)")


def _catalog_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("catalogue metadata")
    g.add_argument("--stats", type=Path, default=None,
                   help="standardisation statistics to apply (a manifest.json or feature_stats JSON from an "
                        "earlier ingest); default: fitted on these inputs and stored in the manifest")


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model config (name or JSON) whose 'preprocess' sets the light-curve length/folding and "
                             "the spectral grid, so the shards fit that model; explicit options still win")


def _opt(options: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(options, name, None)
    return default if value is None else value


def _model_preprocess(options) -> dict[str, Any]:
    """The ``preprocess`` section of ``--model``'s config (read from JSON; no torch import)."""
    import json

    name = _opt(options, "model", None)
    if not name:
        return {}
    path = Path(name)
    if not path.is_file():
        from clipzoo.core.plugins import get_registry

        found = get_registry().model_config_path(name)
        if found is None:
            raise IngestError(f"--model {name}: no such model config; known: "
                              f"{', '.join(get_registry().model_config_names())}")
        path = found
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("preprocess", {})
    except (OSError, ValueError) as exc:
        raise IngestError(f"--model {name}: cannot read {path} ({exc})") from exc


def _lc_config(options):
    from clipzoo.astro.lightcurves import LightCurvePreprocess

    pre = _model_preprocess(options).get("lightcurve", {})
    return LightCurvePreprocess(length=int(_opt(options, "lc_length", pre.get("length", 256))),
                                fold=_opt(options, "fold", pre.get("fold", "none")))


def _grid(options):
    from clipzoo.astro.spectra import SpectralGrid

    pre = _model_preprocess(options).get("spectrum", {}).get("grid", {})
    grid = SpectralGrid(float(_opt(options, "grid_start", pre.get("start", 3600.0))),
                        float(_opt(options, "grid_stop", pre.get("stop", 9800.0))),
                        int(_opt(options, "grid_size", pre.get("size", 512))))
    if grid.stop <= grid.start or grid.size < 2:
        raise IngestError(f"bad spectral grid {grid.start}-{grid.stop} Å with {grid.size} pixels")
    return grid


def _bitmask_option(options) -> str | int:
    value = str(_opt(options, "quality_bitmask", "default"))
    return int(value) if value.isdigit() else value


def load_periods(path: Path) -> dict[str, float]:
    """``{"epic:201...": period}`` from a K2VarCat CSV or a headed CSV with ``period`` and an id column."""
    from clipzoo.astro.catalogs import looks_like_k2varcat, read_k2varcat

    if not path.is_file():
        raise IngestError(f"--periods {path}: no such file")
    if looks_like_k2varcat(path):
        rows, _ = read_k2varcat(path)
        return {f"epic:{r.epic}": r.period for r in rows if r.period}
    out: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = {c.lower(): c for c in reader.fieldnames or []}
        key = next((k for k in ("kic", "epic", "tic") if k in cols), None)
        if "period" not in cols or key is None:
            raise IngestError(f"--periods {path}: needs a header with 'period' and one of kic/epic/tic; "
                              f"has {reader.fieldnames}")
        for row in reader:
            try:
                out[f"{key}:{int(row[cols[key]])}"] = float(row[cols["period"]])
            except (TypeError, ValueError):
                continue
    return out


def _json_safe(value: Any) -> Any:
    """numpy scalars/arrays and NaN to plain JSON values."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------------------
# record builders (shared by the single-modality sources and the cross-match)
# ------------------------------------------------------------------------------------------------
def read_lightcurve_records(paths: list[Path], options, report: IngestReport) -> list:
    """Read light-curve files, stitch per star (unless --no-stitch) -> crossmatch Records."""
    from clipzoo.astro.crossmatch import Record
    from clipzoo.astro.errors import AstroReadError
    from clipzoo.astro.datalink import datalink_product, read_epoch_photometry
    from clipzoo.astro.lightcurves import read_lightcurve, stitch

    from tqdm import tqdm

    by_target: dict[str, list] = {}
    for path in tqdm(paths, desc="read light curves", unit="file", leave=False, disable=len(paths) < 20):
        report.input_seen(path)
        try:
            if datalink_product(path) is not None:  # Gaia DataLink EPOCH_PHOTOMETRY (G-band transits)
                lc = read_epoch_photometry(path)
            else:
                lc = read_lightcurve(path, flux_column=_opt(options, "flux_column", "auto"),
                                     quality_bitmask=_bitmask_option(options),
                                     aperture=_opt(options, "aperture", "pipeline"))
        except AstroReadError as exc:
            report.skip(path, str(exc))
            continue
        if lc.n_valid == 0:
            report.skip(path, f"no valid cadence: {lc.meta['n_nonfinite']} non-finite, "
                              f"{lc.meta['n_quality_flagged']} quality-flagged of {len(lc)}")
            continue
        report.count("mission", lc.meta["mission"])
        key = lc.target_id() if not _opt(options, "no_stitch", False) else f"{lc.target_id()}|{path}"
        by_target.setdefault(key, []).append(lc)
    records = []
    for key, segments in by_target.items():
        lc = stitch(segments) if len(segments) > 1 else segments[0]
        ids = {k: lc.meta[k] for k in ("kic", "epic", "tic", "gaia_source_id") if lc.meta.get(k) is not None}
        report.count("segments_per_star", len(segments))
        records.append(Record("lightcurve", lc.meta["mission"], ids, lc.meta.get("ra"), lc.meta.get("dec"), lc,
                              dict(lc.meta)))
    return records


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


def read_spectrum_records(paths: list[Path], options, report: IngestReport) -> list:
    from clipzoo.astro.crossmatch import Record
    from clipzoo.astro.errors import AstroReadError
    from clipzoo.astro.spectra import read_desi_spectra, read_gaia_xp_sampled

    from tqdm import tqdm

    records = []
    for path in tqdm(paths, desc="read spectra", unit="file", leave=False, disable=len(paths) < 20):
        report.input_seen(path)
        try:
            spectra = read_desi_spectra(path) if classify_input(path) == "desi" else read_gaia_xp_sampled(path)
        except AstroReadError as exc:
            report.skip(path, str(exc))
            continue
        for spec in spectra:
            m = spec.meta
            name = f"TARGETID {m['targetid']}" if "targetid" in m else f"Gaia source_id {m['gaia_source_id']}"
            if spec.n_valid == 0:
                status = f" (COADD_FIBERSTATUS={m['coadd_fiberstatus']})" if "coadd_fiberstatus" in m else ""
                report.skip(f"{path}#{name}", f"no valid pixel: every IVAR is 0 or MASK set{status}", kind="target")
                continue
            report.count("spectrum_survey", m["survey_name"] + (f"/{m['desi_layout']}" if "desi_layout" in m else ""))
            ids = {k: m[k] for k in ("targetid", "gaia_source_id") if m.get(k) is not None}
            records.append(Record("spectrum", m["survey_name"], ids, m.get("ra"), m.get("dec"), spec, dict(m)))
    return records


def read_catalog_record_list(paths: list[Path], options, report: IngestReport) -> list:
    from clipzoo.astro.catalogs import read_catalog_records
    from clipzoo.astro.crossmatch import Record
    from clipzoo.astro.errors import AstroReadError

    from tqdm import tqdm

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


def _load_stats(options):
    from clipzoo.astro.catalogs import FeatureStats

    path = _opt(options, "stats", None)
    if path is None:
        return None
    try:
        return FeatureStats.load(path)
    except (OSError, ValueError, KeyError) as exc:
        raise IngestError(f"--stats {path}: {exc}") from exc


def _class_index(label: str | None, report: IngestReport) -> int | None:
    from clipzoo.astro.catalogs import K2VARCAT_CLASSES

    if label is None:
        return None
    if label in K2VARCAT_CLASSES:
        report.count("class", label)
        return K2VARCAT_CLASSES.index(label)
    report.count("class_not_in_vocabulary", label)
    return None


def _ids_json(ids: dict[str, int]) -> dict[str, Any]:
    # 64-bit ids (Gaia source_id, DESI TARGETID) exceed JSON-safe integers for some readers: keep both forms
    return {k: int(v) for k, v in ids.items()} | {f"{k}_str": str(v) for k, v in ids.items() if abs(int(v)) > 2**53}


class _Keys:
    """Unique sample keys; a second sample for one key is skipped with a reason rather than crashing."""

    def __init__(self):
        self.seen: set[str] = set()

    def claim(self, key: str, where: str, report: IngestReport) -> bool:
        if key in self.seen:
            report.skip(where, f"duplicate sample key {key} (same star given twice)", kind="duplicate")
            return False
        self.seen.add(key)
        return True


def _where(meta: dict[str, Any]) -> str:
    """The file(s) a record came from, for skip messages (a stitched light curve has several)."""
    source = meta.get("source")
    return ", ".join(map(str, source)) if isinstance(source, (list, tuple)) else str(source)


def _primary_key(ids: dict[str, int], fallback: str) -> str:
    from clipzoo.core.data.writer import safe_key

    for k in ("kic", "epic", "tic", "gaia_source_id", "targetid"):
        if k in ids:
            return safe_key(k.replace("_source_id", ""), ids[k])
    return safe_key(fallback)


# ------------------------------------------------------------------------------------------------
# sources
# ------------------------------------------------------------------------------------------------
class LightCurvesSource(Source):
    domain = "astro"
    name = "lightcurves"
    help = "Kepler/K2/TESS light curves and TPF/FFI cutouts -> lightcurve.npy [L,3] per star (stitched)"
    worker_imports = ("clipzoo.astro.lightcurves", "astropy.io.fits", "astropy.timeseries")
    joins_inputs = True  # records of one object are joined (and deduplicated) across files: one work unit

    @classmethod
    def add_arguments(cls, parser):
        _lightcurve_arguments(parser)
        _model_argument(parser)

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        from clipzoo.astro.lightcurves import preprocess_lightcurve
        from clipzoo.core.data.writer import safe_key

        cfg = _lc_config(self.options)
        periods = load_periods(self.options.periods) if _opt(self.options, "periods", None) else {}
        records = read_lightcurve_records(list(expand_inputs(inputs, FITS_SUFFIXES, report)), self.options, report)
        keys = _Keys()
        for rec in records:
            lc = rec.payload
            try:
                arr, mask, info = preprocess_lightcurve(lc, cfg, period=periods.get(lc.target_id()))
            except ValueError as exc:
                report.skip(_where(lc.meta), f"preprocessing failed: {exc}", kind="preprocess")
                continue
            key = _primary_key(rec.ids, Path(_where(lc.meta)).stem)
            if _opt(self.options, "no_stitch", False):
                key = safe_key(key, Path(_where(lc.meta)).stem)
            if not keys.claim(key, _where(lc.meta), report):
                continue
            yield {"__key__": key, "lightcurve.npy": arr, "lightcurve_mask.npy": mask,
                   "json": _json_safe({**rec.meta, "ids": _ids_json(rec.ids), "preprocess": info})}


class SpectraSource(Source):
    domain = "astro"
    name = "spectra"
    help = "DESI coadds (B/R/Z merged) and Gaia XP sampled spectra -> spectrum.npy [L,2] on a common grid"
    worker_imports = ("clipzoo.astro.spectra", "astropy.io.fits", "astropy.table")
    joins_inputs = True  # records of one object are joined (and deduplicated) across files: one work unit

    @classmethod
    def add_arguments(cls, parser):
        _spectrum_arguments(parser)
        _model_argument(parser)

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        from clipzoo.astro.errors import AstroReadError
        from clipzoo.astro.spectra import spectrum_array
        from clipzoo.core.data.writer import safe_key

        grid = _grid(self.options)
        paths = list(expand_inputs(inputs, FITS_SUFFIXES + (".ecsv", ".vot", ".xml", ".csv"), report))
        keys = _Keys()
        for rec in read_spectrum_records(paths, self.options, report):
            prefix = "desi" if rec.catalog == "desi" else "gaiaxp"
            key = safe_key(prefix, rec.ids.get("targetid", rec.ids.get("gaia_source_id")))
            try:
                arr, mask, info = spectrum_array(rec.payload, grid)
            except AstroReadError as exc:
                report.skip(f"{rec.meta['source']}#{key}", str(exc), kind="target")
                continue
            if not keys.claim(key, f"{rec.meta['source']}#{key}", report):
                continue
            yield {"__key__": key, "spectrum.npy": arr, "spectrum_mask.npy": mask,
                   "json": _json_safe({**rec.meta, "ids": _ids_json(rec.ids), "preprocess": info})}


class CatalogSource(Source):
    domain = "astro"
    name = "catalog"
    help = "Gaia gaia_source (TAP JSON/ECSV/VOTable) and K2VarCat rows -> metadata.npy [F] per row"
    worker_imports = ("clipzoo.astro.catalogs", "astropy.table", "astropy.coordinates")
    joins_inputs = True  # records of one object are joined (and deduplicated) across files: one work unit

    @classmethod
    def add_arguments(cls, parser):
        _catalog_arguments(parser)

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        from clipzoo.astro.catalogs import FEATURES, standardise_records

        stats = _load_stats(self.options)
        records = read_catalog_record_list(list(expand_inputs(inputs, TABLE_SUFFIXES + (".fits",), report)),
                                           self.options, report)
        vectors, masks, stats = standardise_records([r.payload for r in records], stats)
        report.notes["feature_stats"] = stats.to_dict()
        report.notes["features"] = FEATURES
        keys = _Keys()
        for rec, vec, mask in zip(records, vectors, masks):
            key = _primary_key(rec.ids, "row")
            where = f"{rec.meta['source']}" + (f":{rec.meta['line']}" if "line" in rec.meta else "")
            if not keys.claim(key, where, report):
                continue
            sample = {"__key__": key, "metadata.npy": vec, "metadata_mask.npy": mask,
                      "json": _json_safe({**rec.meta, "catalog": rec.catalog, "ids": _ids_json(rec.ids),
                                          "ra": rec.ra, "dec": rec.dec, "features_raw": rec.payload,
                                          "label": rec.label})}
            cls_index = _class_index(rec.label, report)
            if cls_index is not None:
                sample["cls"] = cls_index
            yield sample


class CrossmatchSource(Source):
    domain = "astro"
    name = "crossmatch"
    help = "tri-modal samples: light curves + spectra + catalogue rows matched by id and sky position"
    worker_imports = ("clipzoo.astro.crossmatch", "clipzoo.astro.spectra", "clipzoo.astro.catalogs", "astropy.io.fits",
                      "astropy.table", "astropy.coordinates", "astropy.timeseries")
    joins_inputs = True  # records of one object are joined (and deduplicated) across files: one work unit

    @classmethod
    def add_arguments(cls, parser):
        g = parser.add_argument_group("cross-match")
        g.add_argument("--radius", type=float, default=1.0, help="positional match radius [arcsec]")
        g.add_argument("--min-modalities", type=int, default=1, choices=[1, 2, 3],
                       help="write only stars with at least this many modalities")
        _lightcurve_arguments(parser)
        _spectrum_arguments(parser)
        _catalog_arguments(parser)
        _model_argument(parser)

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        import numpy as np

        from clipzoo.astro.catalogs import FEATURES, merge_feature_values, standardise_records
        from clipzoo.astro.crossmatch import crossmatch
        from clipzoo.astro.lightcurves import preprocess_lightcurve
        from clipzoo.astro.spectra import spectrum_array

        cfg, grid = _lc_config(self.options), _grid(self.options)
        periods = load_periods(self.options.periods) if _opt(self.options, "periods", None) else {}
        stats = _load_stats(self.options)
        lc_paths, spec_paths, cat_paths = [], [], []
        for path in expand_inputs(inputs, FITS_SUFFIXES + TABLE_SUFFIXES, report):
            kind = classify_input(path)
            {"desi": spec_paths, "gaia_xp": spec_paths, "lightcurve": lc_paths, "catalog": cat_paths}[kind].append(path)
        records = (read_lightcurve_records(lc_paths, self.options, report)
                   + read_spectrum_records(spec_paths, self.options, report)
                   + read_catalog_record_list(cat_paths, self.options, report))
        groups, match_stats = crossmatch(records, _opt(self.options, "radius", 1.0))

        # metadata values per group: catalogue rows first, then light-curve header fallbacks (teff, gal_b)
        values = []
        for group in groups:
            merged = merge_feature_values([r.payload for r in group if r.modality == "metadata"]
                                          + [_header_features(r) for r in group if r.modality == "lightcurve"])
            values.append(merged)
        vectors, vmasks, stats = standardise_records(values, stats)
        report.notes["feature_stats"] = stats.to_dict()
        report.notes["features"] = FEATURES
        report.notes["crossmatch"] = match_stats
        written = {"lightcurve": 0, "spectrum": 0, "metadata": 0}
        keys = _Keys()
        for group, raw_values, vec, vmask in zip(groups, values, vectors, vmasks):
            lcs = [r for r in group if r.modality == "lightcurve"]
            specs = [r for r in group if r.modality == "spectrum"]
            ids: dict[str, int] = {}
            for r in group:
                for k, v in r.ids.items():
                    ids.setdefault(k, v)
            where = ", ".join(sorted({_where(r.meta) for r in group}))
            sample: dict[str, Any] = {}
            info: dict[str, Any] = {"ids": _ids_json(ids), "catalogs": sorted({r.catalog for r in group})}
            # light curve
            lc_arr, lc_mask = np.zeros((cfg.length, 3), np.float32), np.zeros(cfg.length, bool)
            if lcs:
                best = max(lcs, key=lambda r: r.payload.n_valid)
                try:
                    lc_arr, lc_mask, lc_info = preprocess_lightcurve(best.payload, cfg,
                                                                     period=_group_period(group, periods))
                    info["lightcurve"] = {"source": best.meta.get("source"), "mission": best.catalog, **lc_info}
                except ValueError as exc:
                    report.skip(where, f"light curve dropped: {exc}", kind="preprocess")
            # spectrum
            sp_arr, sp_mask = np.zeros((grid.size, 2), np.float32), np.zeros(grid.size, bool)
            if specs:
                best = max(specs, key=lambda r: r.payload.n_valid)
                try:
                    sp_arr, sp_mask, sp_info = spectrum_array(best.payload, grid)
                    info["spectrum"] = {"source": best.meta.get("source"), "survey": best.catalog, **sp_info}
                except ValueError as exc:
                    report.skip(where, f"spectrum dropped: {exc}", kind="preprocess")
            present = {"lightcurve": bool(lc_mask.any()), "spectrum": bool(sp_mask.any()),
                       "metadata": bool(vmask.any())}
            if sum(present.values()) < _opt(self.options, "min_modalities", 1):
                report.skip(where, f"only {sum(present.values())} modality(ies) after matching "
                                   f"(--min-modalities {_opt(self.options, 'min_modalities', 1)})", kind="policy")
                continue
            ra = next((r.ra for r in group if r.ra is not None), None)
            dec = next((r.dec for r in group if r.ra is not None), None)
            labels = sorted({r.label for r in group if r.label})
            label = labels[0] if len(labels) == 1 else None
            if len(labels) > 1:
                report.count("conflicting_labels", "+".join(labels))
            key = _primary_key(ids, "star")
            if not keys.claim(key, where, report):
                continue
            for m, p in present.items():
                written[m] += int(p)
            report.count("modalities", "+".join(m for m, p in present.items() if p) or "none")
            info.update(ra=ra, dec=dec, label=label, present=present, source=where,
                        features_raw=raw_values,
                        license=sorted({str(r.meta.get("license")) for r in group if r.meta.get("license")}))
            sample.update({"__key__": key, "lightcurve.npy": lc_arr, "lightcurve_mask.npy": lc_mask,
                           "spectrum.npy": sp_arr, "spectrum_mask.npy": sp_mask,
                           "metadata.npy": vec, "metadata_mask.npy": vmask, "json": _json_safe(info)})
            cls_index = _class_index(label, report)
            if cls_index is not None:
                sample["cls"] = cls_index
            yield sample
        report.notes["crossmatch"]["samples_with"] = written


def _header_features(rec) -> dict[str, Any]:
    """Light-curve header values used when no catalogue row provides them."""
    from clipzoo.astro.catalogs import galactic_latitude

    feats: dict[str, Any] = {}
    if rec.meta.get("teff") is not None:
        feats["teff"] = float(rec.meta["teff"])
    if rec.ra is not None and rec.dec is not None:
        feats["gal_b"] = galactic_latitude(float(rec.ra), float(rec.dec))
    return feats


def _group_period(group, periods: dict[str, float]) -> float | None:
    for r in group:
        if r.modality == "metadata" and r.meta.get("period"):
            return float(r.meta["period"])
    for r in group:
        if r.modality == "lightcurve" and r.payload.target_id() in periods:
            return periods[r.payload.target_id()]
    return None


class SimulatedSource(Source):
    domain = "astro"
    name = "simulated"
    help = "seeded simulated variable stars (EB, RR Lyrae, rotational, delta Scuti, LPV) in the tri-modal layout"
    worker_imports = ("clipzoo.astro.simulate",)  # the pool's forkserver preloads them

    @classmethod
    def add_arguments(cls, parser):
        g = parser.add_argument_group("simulation")
        g.add_argument("--n-per-class", type=int, default=200, help="stars per class (5 classes)")
        g.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same stars)")

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        from clipzoo.astro.catalogs import FEATURES
        from clipzoo.astro.simulate import CLASSES, SimulationConfig, simulate_samples

        if inputs:
            raise IngestError("the simulated source takes no inputs (it generates stars from --seed)")
        n = _opt(self.options, "n_per_class", 200)
        if n < 1:
            raise IngestError("--n-per-class must be at least 1")
        samples, stats = simulate_samples(SimulationConfig(n_per_class=n, seed=_opt(self.options, "seed", 0)),
                                          _load_stats(self.options))
        report.notes.update(feature_stats=stats.to_dict(), features=FEATURES, classes=list(CLASSES))
        for sample in samples:
            report.count("class", sample["json"]["label"])
            yield sample
