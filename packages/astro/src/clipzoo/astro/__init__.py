"""clipzoo-astro: AstroM³-style tri-modal variable-star data (light curves, spectra, catalogue metadata).

Import-light on purpose: the readers (:mod:`.lightcurves`, :mod:`.spectra`, :mod:`.catalogs`,
:mod:`.crossmatch`) import astropy inside their functions, and :mod:`.plugin` registers the ingest
sources, towers, model configs and benchmark tasks with core's plugin registry.
"""

__version__ = "0.1.0"
