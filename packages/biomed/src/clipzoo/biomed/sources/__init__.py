"""The biomed ingest sources: ``clipzoo ingest biomed jats|dicom|nifti|images``.

Each source adapts a reader (:mod:`~clipzoo.biomed.jats`, :mod:`~clipzoo.biomed.dicom`,
:mod:`~clipzoo.biomed.nifti`, :mod:`~clipzoo.biomed.imaging`) to webdataset samples following the contract in
``docs/ARCHITECTURE.md``: one bad input is a ``report.skip(path, reason)``, never an exception.

One module per source: :mod:`.pmc` (JATS articles, PMC packages, tarballs and Cloud Service mirrors),
:mod:`.dicom_series`, :mod:`.nifti_volumes`, :mod:`.images`; what they share (keys, input naming, caption and
label options) is in :mod:`._common`. Importing this package stays cheap: the readers (lxml, pydicom, MONAI)
are imported inside the sources' methods.
"""

from clipzoo.biomed.sources.dicom_series import DicomSource
from clipzoo.biomed.sources.images import ImagesSource
from clipzoo.biomed.sources.nifti_volumes import NiftiSource
from clipzoo.biomed.sources.pmc import JatsSource

__all__ = ["DicomSource", "ImagesSource", "JatsSource", "NiftiSource"]
