"""clipzoo-remote-sensing: RS caption corpora, GeoTIFF chips and RS benchmarks for clipzoo.

Import-light on purpose (the plugin loader imports this package); readers live in
:mod:`clipzoo.remote_sensing.captions` and :mod:`clipzoo.remote_sensing.geotiff`.
"""

__version__ = "0.1.0"
