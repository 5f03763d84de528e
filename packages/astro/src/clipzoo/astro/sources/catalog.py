"""``clipzoo ingest astro catalog``: Gaia gaia_source and K2VarCat rows -> one standardised metadata vector each."""

from __future__ import annotations

from typing import Any, Iterator

from clipzoo.astro.sources import options as opts
from clipzoo.astro.sources.samples import Keys, class_index, ids_json, json_safe, primary_key
from clipzoo.core.ingest import Source, expand_inputs


class CatalogSource(Source):
    domain = "astro"
    name = "catalog"
    help = "Gaia gaia_source (TAP JSON/ECSV/VOTable) and K2VarCat rows -> metadata.npy [F] per row"
    joins_inputs = True  # records of one object are joined (and deduplicated) across files: one work unit
    worker_imports = ("clipzoo.astro.catalogs", "astropy.table", "astropy.coordinates")  # preloaded by the forkserver

    @classmethod
    def add_arguments(cls, parser):
        opts.catalog_arguments(parser)
        opts.model_argument(parser)

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        from clipzoo.astro.catalogs import FEATURES, read_catalog_files, standardise_records
        from clipzoo.astro.crossmatch import TABLE_SUFFIXES

        stats = opts.feature_stats(self.options)
        records = read_catalog_files(list(expand_inputs(inputs, TABLE_SUFFIXES + (".fits",), report)), report)
        vectors, masks, stats = standardise_records([r.payload for r in records], stats)
        report.notes.update(feature_stats=stats.to_dict(), features=FEATURES,
                            preprocess=opts.preprocess_note(stats=stats))
        keys = Keys()
        for rec, vec, mask in zip(records, vectors, masks):
            key = primary_key(rec.ids, "row")
            at = f"{rec.meta['source']}" + (f":{rec.meta['line']}" if "line" in rec.meta else "")
            if not keys.claim(key, at, report):
                continue
            sample = {"__key__": key, "metadata.npy": vec, "metadata_mask.npy": mask,
                      "json": json_safe({**rec.meta, "catalog": rec.catalog, "ids": ids_json(rec.ids),
                                         "ra": rec.ra, "dec": rec.dec, "features_raw": rec.payload,
                                         "label": rec.label})}
            cls_index = class_index(rec.label, report)
            if cls_index is not None:
                sample["cls"] = cls_index
            yield sample
