"""The astro sources' shared options, and the settings they resolve to: explicit option, else ``--model``'s
``preprocess``, else the default.

``--model`` names a model config (registered name or JSON file) or a saved model folder. A folder written by
training carries its training data's settings in ``preprocess`` (light-curve length and folding, spectral grid,
metadata feature statistics), so new raw data ingested with ``--model MODEL_DIR`` is standardised exactly as the
model's training data was, without ``--stats``. Each source records the settings it used as the ``preprocess``
note of its manifest (:func:`preprocess_note`), which core's trainer puts on the model it trains.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clipzoo.core.ingest import IngestError


def lightcurve_arguments(parser: argparse.ArgumentParser) -> None:
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


def spectrum_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("spectra")
    g.add_argument("--grid-start", type=float, default=None,
                   help="common grid start [Å] (default: --model's, else 3600)")
    g.add_argument("--grid-stop", type=float, default=None,
                   help="common grid stop [Å] (default: --model's, else 9800)")
    g.add_argument("--grid-size", type=int, default=None, help="common grid length L (default: --model's, else 512)")


def catalog_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("catalogue metadata")
    g.add_argument("--stats", type=Path, default=None,
                   help="standardisation statistics to apply (a manifest.json or feature_stats JSON from an "
                        "earlier ingest); default: --model's feature statistics, else fitted on these inputs "
                        "(stored in the manifest either way)")


def model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model config (name or JSON) or saved model folder whose 'preprocess' sets the "
                             "light-curve length/folding, the spectral grid and the metadata statistics, so the "
                             "shards fit that model; explicit options still win")


_RESOLVED = "_clipzoo_model_preprocess"  # (--model value, its preprocess) kept on the options


def model_preprocess(options: argparse.Namespace) -> dict[str, Any]:
    """The ``preprocess`` section of ``--model`` (a saved model folder, a JSON file or a config name; no torch).

    Resolved once per options object: a source asks for it from several settings (light curves, grid, statistics),
    and each would otherwise read the model again, so a file replaced in between could mix two models' settings.
    """
    name = options.model
    if not name:
        return {}
    cached = getattr(options, _RESOLVED, None)
    if cached is not None and cached[0] == name:
        return cached[1]
    preprocess = _read_model_preprocess(name)
    setattr(options, _RESOLVED, (name, preprocess))
    return preprocess


def _read_model_preprocess(name: str) -> dict[str, Any]:
    path = Path(name)
    if path.is_dir():  # a saved model package: core's package module reads and checks its config.json
        from clipzoo.core.models.package import CONFIG_NAME, read_document

        if not (path / CONFIG_NAME).is_file():
            raise IngestError(f"--model {name}: a folder but not a saved model (no {CONFIG_NAME}); give a "
                              "model folder written by 'clipzoo train', a config JSON or a config name")
        try:
            return read_document(path)["preprocess"]
        except (OSError, ValueError) as exc:
            raise IngestError(f"--model {name}: {exc}") from None
    if not path.is_file():
        from clipzoo.core.plugins import MODEL_KINDS, get_registry

        registry = get_registry(kinds=MODEL_KINDS)  # model configs only: no other plugin part is loaded
        found = registry.model_config_path(name)
        if found is None:
            raise IngestError(f"--model {name}: no such model config; known: "
                              f"{', '.join(registry.model_config_names())}")
        path = found
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IngestError(f"--model {name}: cannot read {path} ({exc})") from exc
    preprocess = document.get("preprocess", {}) if isinstance(document, dict) else {}
    if not isinstance(preprocess, dict):
        raise IngestError(f"--model {name}: 'preprocess' in {path} is not a mapping")
    return preprocess


def _given(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def lightcurve_settings(options: argparse.Namespace, length: int = 256, fold: str = "none"):
    """``--lc-length``/``--fold``, else ``--model``'s, else ``length``/``fold``."""
    from clipzoo.astro.lightcurves import LightCurvePreprocess

    pre = model_preprocess(options).get("lightcurve", {})
    try:
        return LightCurvePreprocess(length=int(_given(options.lc_length, pre.get("length", length))),
                                    fold=_given(options.fold, pre.get("fold", fold)))
    except ValueError as exc:
        raise IngestError(f"light-curve settings: {exc}") from None


def spectral_grid(options: argparse.Namespace, start: float = 3600.0, stop: float = 9800.0, size: int = 512):
    """``--grid-*``, else ``--model``'s grid, else ``start``/``stop``/``size``."""
    from clipzoo.astro.spectra import SpectralGrid

    pre = model_preprocess(options).get("spectrum", {}).get("grid", {})
    grid = SpectralGrid(float(_given(options.grid_start, pre.get("start", start))),
                        float(_given(options.grid_stop, pre.get("stop", stop))),
                        int(_given(options.grid_size, pre.get("size", size))))
    if grid.stop <= grid.start or grid.size < 2:
        raise IngestError(f"bad spectral grid {grid.start}-{grid.stop} Å with {grid.size} pixels")
    return grid


def quality_bitmask(options: argparse.Namespace) -> str | int:
    value = str(options.quality_bitmask)
    return int(value) if value.isdigit() else value


def periods(options: argparse.Namespace) -> dict[str, float]:
    """``--periods`` as ``{"epic:201...": period}`` (empty when not given)."""
    from clipzoo.astro.catalogs import load_periods
    from clipzoo.astro.errors import AstroReadError

    if options.periods is None:
        return {}
    try:
        return load_periods(Path(options.periods))
    except AstroReadError as exc:
        raise IngestError(str(exc)) from None


def feature_stats(options: argparse.Namespace):
    """Metadata standardisation: ``--stats``, else ``--model``'s ``preprocess.metadata.feature_stats``, else None
    (the source fits them on its inputs)."""
    from clipzoo.astro.catalogs import FeatureStats

    path = options.stats
    if path is not None:
        try:
            return FeatureStats.load(path)
        except (OSError, ValueError, KeyError) as exc:
            raise IngestError(f"--stats {path}: {exc}") from exc
    found = model_preprocess(options).get("metadata", {}).get("feature_stats") if options.model else None
    if found is None:
        return None
    try:
        return FeatureStats.checked(found, f"--model {options.model}: preprocess.metadata.feature_stats")
    except ValueError as exc:
        raise IngestError(str(exc)) from None


def preprocess_note(*, lightcurve=None, grid=None, stats=None) -> dict[str, dict[str, Any]]:
    """``{modality: settings}`` of what a source applied, for the manifest's ``preprocess`` note.

    Core's trainer merges this note into the trained model's ``preprocess`` (refusing a value that contradicts
    the model config), so the model package carries the settings and statistics its inputs need.
    """
    from clipzoo.astro.catalogs import FEATURE_NAMES

    note: dict[str, dict[str, Any]] = {}
    if lightcurve is not None:
        note["lightcurve"] = {"length": lightcurve.length, "fold": lightcurve.fold}
    if grid is not None:
        note["spectrum"] = {"grid": grid.to_dict()}
    if stats is not None:
        note["metadata"] = {"features": list(FEATURE_NAMES), "feature_stats": stats.to_dict()}
    return note
