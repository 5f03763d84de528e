"""``clipzoo ingest astro spectra``: DESI coadds and Gaia XP sampled spectra -> one sample per target."""

from __future__ import annotations

from typing import Any, Iterator

from clipzoo.astro.sources import options as opts
from clipzoo.astro.sources.samples import Keys, ids_json, json_safe
from clipzoo.core.ingest import Source, expand_inputs


class SpectraSource(Source):
    domain = "astro"
    name = "spectra"
    help = "DESI coadds (B/R/Z merged) and Gaia XP sampled spectra -> spectrum.npy [L,2] on a common grid"
    joins_inputs = True  # records of one object are joined (and deduplicated) across files: one work unit
    worker_imports = ("clipzoo.astro.spectra", "astropy.io.fits", "astropy.table")  # preloaded by the pool's forkserver

    @classmethod
    def add_arguments(cls, parser):
        opts.spectrum_arguments(parser)
        opts.model_argument(parser)

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        from clipzoo.astro.crossmatch import FITS_SUFFIXES
        from clipzoo.astro.errors import AstroReadError
        from clipzoo.astro.spectra import read_spectrum_records, spectrum_array
        from clipzoo.core.data.writer import safe_key

        grid = opts.spectral_grid(self.options)
        report.notes["preprocess"] = opts.preprocess_note(grid=grid)
        paths = list(expand_inputs(inputs, FITS_SUFFIXES + (".ecsv", ".vot", ".xml", ".csv"), report))
        keys = Keys()
        for rec in read_spectrum_records(paths, report):
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
                   "json": json_safe({**rec.meta, "ids": ids_json(rec.ids), "preprocess": info})}
