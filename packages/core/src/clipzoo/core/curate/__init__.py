"""Curation of shard sets: corpus-wide dedup, decontamination against benchmarks, MetaCLIP balancing and
DataComp-style filters (``clipzoo curate``). See :mod:`clipzoo.core.curate.engine` for the two passes and
:mod:`clipzoo.core.curate.steps` for what each step decides."""

from clipzoo.core.curate.engine import load_recipe, read_curation, run_curate
from clipzoo.core.curate.steps import CurateError, build_steps

__all__ = ["CurateError", "build_steps", "load_recipe", "read_curation", "run_curate"]
