"""``clipzoo ingest astro crossmatch``: light curves + spectra + catalogue rows matched per star -> tri-modal samples.

The steps of :meth:`CrossmatchSource.samples`, in order: sort the inputs by what they hold
(:func:`~clipzoo.astro.crossmatch.classify_input`), read each kind into records, cross-match the records into
per-star groups, standardise each group's metadata values together, then build one sample per group (best
light curve and spectrum preprocessed, ids and labels merged) and keep it when it has enough modalities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from clipzoo.astro.sources import options as opts
from clipzoo.astro.sources.samples import Keys, class_index, ids_json, json_safe, primary_key, where
from clipzoo.core.ingest import IngestReport, Source, expand_inputs


@dataclass
class _Settings:
    """What every group is preprocessed with (resolved once per run)."""

    lightcurve: Any  # LightCurvePreprocess
    grid: Any  # SpectralGrid
    periods: dict[str, float]
    min_modalities: int


class CrossmatchSource(Source):
    domain = "astro"
    name = "crossmatch"
    help = "tri-modal samples: light curves + spectra + catalogue rows matched by id and sky position"
    joins_inputs = True  # records of one object are joined (and deduplicated) across files: one work unit
    worker_imports = ("clipzoo.astro.crossmatch", "clipzoo.astro.spectra", "clipzoo.astro.catalogs", "astropy.io.fits",
                      "astropy.table", "astropy.coordinates", "astropy.timeseries")  # preloaded by the forkserver

    @classmethod
    def add_arguments(cls, parser):
        g = parser.add_argument_group("cross-match")
        g.add_argument("--radius", type=float, default=1.0, help="positional match radius [arcsec]")
        g.add_argument("--min-modalities", type=int, default=1, choices=[1, 2, 3],
                       help="write only stars with at least this many modalities")
        opts.lightcurve_arguments(parser)
        opts.spectrum_arguments(parser)
        opts.catalog_arguments(parser)
        opts.model_argument(parser)

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        from clipzoo.astro.catalogs import FEATURES, standardise_records
        from clipzoo.astro.crossmatch import crossmatch

        o = self.options
        settings = _Settings(opts.lightcurve_settings(o), opts.spectral_grid(o), opts.periods(o), o.min_modalities)
        records = self._read(inputs, report)
        groups, match_stats = crossmatch(records, o.radius)
        values = [_group_feature_values(group) for group in groups]
        vectors, vmasks, stats = standardise_records(values, opts.feature_stats(o))
        report.notes.update(feature_stats=stats.to_dict(), features=FEATURES, crossmatch=match_stats,
                            preprocess=opts.preprocess_note(lightcurve=settings.lightcurve, grid=settings.grid,
                                                            stats=stats))
        written = {"lightcurve": 0, "spectrum": 0, "metadata": 0}
        keys = Keys()
        for group, raw_values, vec, vmask in zip(groups, values, vectors, vmasks):
            sample = _group_sample(group, raw_values, vec, vmask, settings, report)
            if sample is None or not keys.claim(sample["__key__"], sample["json"]["source"], report):
                continue
            present = sample["json"]["present"]
            for m, p in present.items():
                written[m] += int(p)
            report.count("modalities", "+".join(m for m, p in present.items() if p) or "none")
            cls_index = class_index(sample["json"]["label"], report)
            if cls_index is not None:
                sample["cls"] = cls_index
            yield sample
        report.notes["crossmatch"]["samples_with"] = written

    def _read(self, inputs, report: IngestReport) -> list:
        """Every input read by the reader of what it holds -> cross-match records of all three modalities."""
        from clipzoo.astro.catalogs import read_catalog_files
        from clipzoo.astro.crossmatch import FITS_SUFFIXES, TABLE_SUFFIXES, classify_input
        from clipzoo.astro.lightcurves import read_lightcurve_records
        from clipzoo.astro.spectra import read_spectrum_records

        o = self.options
        by_kind: dict[str, list] = {"lightcurve": [], "spectrum": [], "catalog": []}
        for path in expand_inputs(inputs, FITS_SUFFIXES + TABLE_SUFFIXES, report):
            kind = classify_input(path)
            by_kind["spectrum" if kind in ("desi", "gaia_xp") else kind].append(path)
        return (read_lightcurve_records(by_kind["lightcurve"], report, flux_column=o.flux_column,
                                        quality_bitmask=opts.quality_bitmask(o), aperture=o.aperture,
                                        stitch_segments=not o.no_stitch)
                + read_spectrum_records(by_kind["spectrum"], report)
                + read_catalog_files(by_kind["catalog"], report))


def _group_feature_values(group: list) -> dict[str, Any]:
    """A star's metadata values: its catalogue rows first, then light-curve header fallbacks (teff, gal_b)."""
    from clipzoo.astro.catalogs import merge_feature_values

    return merge_feature_values([r.payload for r in group if r.modality == "metadata"]
                                + [_header_features(r) for r in group if r.modality == "lightcurve"])


def _header_features(rec) -> dict[str, Any]:
    """Light-curve header values used when no catalogue row provides them."""
    from clipzoo.astro.catalogs import galactic_latitude

    feats: dict[str, Any] = {}
    if rec.meta.get("teff") is not None:
        feats["teff"] = float(rec.meta["teff"])
    if rec.ra is not None and rec.dec is not None:
        feats["gal_b"] = galactic_latitude(float(rec.ra), float(rec.dec))
    return feats


def _group_period(group: list, periods: dict[str, float]) -> float | None:
    for r in group:
        if r.modality == "metadata" and r.meta.get("period"):
            return float(r.meta["period"])
    for r in group:
        if r.modality == "lightcurve" and r.payload.target_id() in periods:
            return periods[r.payload.target_id()]
    return None


def _lightcurve_of(group: list, settings: _Settings, at: str, info: dict[str, Any], report: IngestReport):
    """The group's best light curve (most valid cadences) preprocessed, else zeros with an all-False mask."""
    import numpy as np

    from clipzoo.astro.lightcurves import preprocess_lightcurve

    length = settings.lightcurve.length
    lcs = [r for r in group if r.modality == "lightcurve"]
    if lcs:
        best = max(lcs, key=lambda r: r.payload.n_valid)
        try:
            arr, mask, lc_info = preprocess_lightcurve(best.payload, settings.lightcurve,
                                                       period=_group_period(group, settings.periods))
            info["lightcurve"] = {"source": best.meta.get("source"), "mission": best.catalog, **lc_info}
            return arr, mask
        except ValueError as exc:
            report.skip(at, f"light curve dropped: {exc}", kind="preprocess")
    return np.zeros((length, 3), np.float32), np.zeros(length, bool)


def _spectrum_of(group: list, settings: _Settings, at: str, info: dict[str, Any], report: IngestReport):
    """The group's best spectrum (most valid pixels) on the grid, else zeros with an all-False mask."""
    import numpy as np

    from clipzoo.astro.spectra import spectrum_array

    size = settings.grid.size
    specs = [r for r in group if r.modality == "spectrum"]
    if specs:
        best = max(specs, key=lambda r: r.payload.n_valid)
        try:
            arr, mask, sp_info = spectrum_array(best.payload, settings.grid)
            info["spectrum"] = {"source": best.meta.get("source"), "survey": best.catalog, **sp_info}
            return arr, mask
        except ValueError as exc:
            report.skip(at, f"spectrum dropped: {exc}", kind="preprocess")
    return np.zeros((size, 2), np.float32), np.zeros(size, bool)


def _group_label(group: list, report: IngestReport) -> str | None:
    """The group's class label when its records agree on one (a disagreement is counted, no label)."""
    labels = sorted({r.label for r in group if r.label})
    if len(labels) > 1:
        report.count("conflicting_labels", "+".join(labels))
    return labels[0] if len(labels) == 1 else None


def _group_sample(group: list, raw_values: dict[str, Any], vec, vmask, settings: _Settings,
                  report: IngestReport) -> dict[str, Any] | None:
    """One star's tri-modal sample, or None (skip recorded) when it has fewer than ``min_modalities``."""
    ids: dict[str, int] = {}
    for r in group:
        for k, v in r.ids.items():
            ids.setdefault(k, v)
    at = ", ".join(sorted({where(r.meta) for r in group}))
    info: dict[str, Any] = {"ids": ids_json(ids), "catalogs": sorted({r.catalog for r in group})}
    lc_arr, lc_mask = _lightcurve_of(group, settings, at, info, report)
    sp_arr, sp_mask = _spectrum_of(group, settings, at, info, report)
    present = {"lightcurve": bool(lc_mask.any()), "spectrum": bool(sp_mask.any()), "metadata": bool(vmask.any())}
    if sum(present.values()) < settings.min_modalities:
        report.skip(at, f"only {sum(present.values())} modality(ies) after matching "
                        f"(--min-modalities {settings.min_modalities})", kind="policy")
        return None
    positioned = next((r for r in group if r.ra is not None), None)
    info.update(ra=positioned.ra if positioned else None, dec=positioned.dec if positioned else None,
                label=_group_label(group, report), present=present, source=at, features_raw=raw_values,
                license=sorted({str(r.meta.get("license")) for r in group if r.meta.get("license")}))
    return {"__key__": primary_key(ids, "star"), "lightcurve.npy": lc_arr, "lightcurve_mask.npy": lc_mask,
            "spectrum.npy": sp_arr, "spectrum_mask.npy": sp_mask, "metadata.npy": vec, "metadata_mask.npy": vmask,
            "json": json_safe(info)}
