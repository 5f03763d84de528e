"""Ingest sources of the ``astro`` domain, one module each: ``lightcurves``, ``spectra``, ``catalog``,
``crossmatch``, ``simulated``.

``clipzoo ingest astro SOURCE INPUT... --out DIR``. Every sample follows docs/ARCHITECTURE.md:
``lightcurve.npy`` ``[L, 3]`` + ``lightcurve_mask.npy``, ``spectrum.npy`` ``[L, 2]`` + ``spectrum_mask.npy``,
``metadata.npy`` ``[F]`` + ``metadata_mask.npy``, ``json`` (ids, provenance, license, preprocessing) and
``cls`` when the star has a known class. Single-modality sources write their own modality only; the
cross-match source writes all three (zeros and an all-False mask for a missing one).

The readers live with their formats (:mod:`clipzoo.astro.lightcurves`, :mod:`~clipzoo.astro.spectra`,
:mod:`~clipzoo.astro.catalogs`); :mod:`.options` holds the shared options and the settings they resolve to
(explicit option, else ``--model``'s preprocess, else the default), :mod:`.samples` the key and metadata helpers.
Module import is light (stdlib + core's ingest contract); numpy/astropy load inside ``samples``.
"""

from clipzoo.astro.sources.catalog import CatalogSource
from clipzoo.astro.sources.crossmatch import CrossmatchSource
from clipzoo.astro.sources.lightcurves import LightCurvesSource
from clipzoo.astro.sources.simulated import SimulatedSource
from clipzoo.astro.sources.spectra import SpectraSource

__all__ = ["CatalogSource", "CrossmatchSource", "LightCurvesSource", "SimulatedSource", "SpectraSource"]
