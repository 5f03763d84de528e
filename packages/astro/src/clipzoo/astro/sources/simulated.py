"""``clipzoo ingest astro simulated``: the seeded simulated variable stars (:mod:`clipzoo.astro.simulate`)."""

from __future__ import annotations

from typing import Any, Iterator

from clipzoo.astro.sources import options as opts
from clipzoo.core.ingest import IngestError, Source


class SimulatedSource(Source):
    domain = "astro"
    name = "simulated"
    help = "seeded simulated variable stars (EB, RR Lyrae, rotational, delta Scuti, LPV) in the tri-modal layout"
    worker_imports = ("clipzoo.astro.simulate",)  # preloaded by the process pool's forkserver

    @classmethod
    def add_arguments(cls, parser):
        g = parser.add_argument_group("simulation")
        g.add_argument("--n-per-class", type=int, default=200, help="stars per class (5 classes)")
        g.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same stars)")
        opts.catalog_arguments(parser)
        parser.add_argument("--model", default=None,
                            help="model config (name or JSON) or saved model folder whose preprocess.metadata "
                                 "feature statistics standardise the stars' metadata (as --stats does)")

    def samples(self, inputs, report) -> Iterator[dict[str, Any]]:
        from clipzoo.astro.catalogs import FEATURES
        from clipzoo.astro.simulate import CLASSES, SimulationConfig, simulate_samples

        if inputs:
            raise IngestError("the simulated source takes no inputs (it generates stars from --seed)")
        if self.options.n_per_class < 1:
            raise IngestError("--n-per-class must be at least 1")
        cfg = SimulationConfig(n_per_class=self.options.n_per_class, seed=self.options.seed)
        samples, stats = simulate_samples(cfg, opts.feature_stats(self.options))
        report.notes.update(feature_stats=stats.to_dict(), features=FEATURES, classes=list(CLASSES),
                            preprocess=opts.preprocess_note(lightcurve=cfg.lightcurve, grid=cfg.grid, stats=stats))
        for sample in samples:
            report.count("class", sample["json"]["label"])
            yield sample
