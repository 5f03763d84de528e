"""``clipzoo ingest astro lightcurves``: Kepler/K2/TESS light curves (and TPF/FFI cutouts) -> one sample per star."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from clipzoo.astro.sources import options as opts
from clipzoo.astro.sources.samples import Keys, ids_json, json_safe, primary_key, where
from clipzoo.core.ingest import Source, expand_inputs


class LightCurvesSource(Source):
    domain = "astro"
    name = "lightcurves"
    help = "Kepler/K2/TESS light curves and TPF/FFI cutouts -> lightcurve.npy [L,3] per star (stitched)"
    joins_inputs = True  # records of one object are joined (and deduplicated) across files: one work unit
    # the process pool's forkserver preloads these
    worker_imports = ("clipzoo.astro.lightcurves", "astropy.io.fits", "astropy.timeseries")

    @classmethod
    def add_arguments(cls, parser):
        opts.lightcurve_arguments(parser)
        opts.model_argument(parser)

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        from clipzoo.astro.crossmatch import FITS_SUFFIXES
        from clipzoo.astro.lightcurves import preprocess_lightcurve, read_lightcurve_records
        from clipzoo.core.data.writer import safe_key

        o = self.options
        cfg, periods = opts.lightcurve_settings(o), opts.periods(o)
        report.notes["preprocess"] = opts.preprocess_note(lightcurve=cfg)
        records = read_lightcurve_records(list(expand_inputs(inputs, FITS_SUFFIXES, report)), report,
                                          flux_column=o.flux_column, quality_bitmask=opts.quality_bitmask(o),
                                          aperture=o.aperture, stitch_segments=not o.no_stitch)
        keys = Keys()
        for rec in records:
            lc = rec.payload
            try:
                arr, mask, info = preprocess_lightcurve(lc, cfg, period=periods.get(lc.target_id()))
            except ValueError as exc:
                report.skip(where(lc.meta), f"preprocessing failed: {exc}", kind="preprocess")
                continue
            key = primary_key(rec.ids, Path(where(lc.meta)).stem)
            if o.no_stitch:
                key = safe_key(key, Path(where(lc.meta)).stem)
            if not keys.claim(key, where(lc.meta), report):
                continue
            yield {"__key__": key, "lightcurve.npy": arr, "lightcurve_mask.npy": mask,
                   "json": json_safe({**rec.meta, "ids": ids_json(rec.ids), "preprocess": info})}
