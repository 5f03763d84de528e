"""clipzoo-biomed: biomedical literature figures, medical images, captions and benchmarks for clipzoo.

Import-light on purpose (the CLI imports the plugin on startup): readers live in submodules
(:mod:`.jats`, :mod:`.dicom`, :mod:`.nifti`, :mod:`.imaging`, :mod:`.captions`), sources in :mod:`.sources`.
"""

__version__ = "0.1.0"
