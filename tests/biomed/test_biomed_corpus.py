"""Every file a clinical export holds: pydicom's and nibabel's own test corpora, read as a user's export folder.

The corpora ship inside the installed wheels (``pydicom/data/test_files``, ``nibabel/tests/data``): 176 files of
every kind (images in 12 transfer syntaxes, DICOMDIRs, SR, RT plans, waveforms, truncated and malformed files,
JSON and text). "Decodable" is decided by pydicom / nibabel themselves in the test, not by the code under test.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from clipzoo.biomed.dicom import SKIP_KINDS as DICOM_KINDS
from clipzoo.biomed.dicom import decode, read_dicom
from clipzoo.biomed.nifti import SKIP_KINDS as NIFTI_KINDS
from clipzoo.biomed.sources import DicomSource, NiftiSource

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# One file per transfer syntax in the wheel's corpus (JPEG Lossless SV1 .4.70 has no .4.57 sibling there).
ONE_PER_SYNTAX = {
    "1.2.840.10008.1.2": "MR_small_implicit.dcm",
    "1.2.840.10008.1.2.1": "MR_small.dcm",
    "1.2.840.10008.1.2.1.99": "image_dfl.dcm",  # deflated explicit VR little endian
    "1.2.840.10008.1.2.2": "MR_small_bigendian.dcm",
    "1.2.840.10008.1.2.4.50": "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline 8-bit
    "1.2.840.10008.1.2.4.51": "JPGExtended.dcm",  # JPEG extended 12-bit
    "1.2.840.10008.1.2.4.70": "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless, process 14 SV1
    "1.2.840.10008.1.2.4.80": "MR_small_jpeg_ls_lossless.dcm",
    "1.2.840.10008.1.2.4.81": "JPEGLSNearLossless_16.dcm",
    "1.2.840.10008.1.2.4.90": "MR_small_jp2klossless.dcm",
    "1.2.840.10008.1.2.4.91": "JPEG2000.dcm",
    "1.2.840.10008.1.2.5": "MR_small_RLE.dcm",
}


def _pydicom_pixels(path: Path):
    """pydicom's own ``pixel_array`` for ``path``, or None when pydicom cannot read or decode it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path).pixel_array
    except Exception:
        return None


@pytest.mark.parametrize("syntax, name", sorted(ONE_PER_SYNTAX.items()))
def test_each_transfer_syntax_decodes_to_pydicoms_values(syntax, name):
    path = PYDICOM_FILES / name
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == syntax
    ours = decode(ds, path)
    assert np.array_equal(ours, _pydicom_pixels(path))
    frames, meta = read_dicom(path)
    assert meta["transfer_syntax"] == syntax
    grey = int(ds.SamplesPerPixel) == 1 and ds.PhotometricInterpretation.startswith("MONOCHROME")
    assert frames.shape == ((1,) + ours.shape if grey else (1,) + ours.shape[:2] + (3,))


def test_lossless_syntaxes_give_the_uncompressed_image():
    """MR_small in five encodings: the display images must be identical (lossless means lossless)."""
    reference, _ = read_dicom(PYDICOM_FILES / "MR_small.dcm")
    for name in ("MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        frames, _ = read_dicom(PYDICOM_FILES / name)
        assert np.array_equal(frames, reference), name


def _reason_kind(reason: str, kinds: dict[str, str]) -> str | None:
    return next((k for k, phrase in kinds.items() if reason.startswith(phrase + ": ")), None)


def test_whole_pydicom_corpus_as_an_export_folder(ingest, caplog, capfd):
    files = sorted(p for p in PYDICOM_FILES.rglob("*") if p.is_file())
    decodable = {p.relative_to(PYDICOM_FILES).as_posix(): a for p in files if (a := _pydicom_pixels(p)) is not None}
    frames = sum(int(pydicom.dcmread(PYDICOM_FILES / n, stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
                 for n in decodable)
    assert (len(files), len(decodable), frames) == (176, 89, 163)

    caplog.set_level(logging.INFO)
    caplog.clear()  # the decodability probe above let pydicom log; only the ingest's own log is judged
    capfd.readouterr()
    summary, samples, _ = ingest(DicomSource, [PYDICOM_FILES], all_files=True)
    assert summary["inputs_seen"] == 176 and summary["samples_written"] == len(samples) == 163
    by_path = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert len(by_path) == 176 - 89 == summary["inputs_skipped"]
    assert not set(by_path) & set(decodable)  # no file pydicom decodes is skipped
    kinds = {p: _reason_kind(r, DICOM_KINDS) for p, r in by_path.items()}
    assert None not in kinds.values(), [r for p, r in by_path.items() if kinds[p] is None]
    assert summary["counters"]["skip_reasons"] == {"not-image": 68, "not-dicom": 13, "corrupt-pixels": 3,
                                                   "malformed-header": 3}
    assert {p: k for p, k in kinds.items() if k in ("corrupt-pixels", "malformed-header")} == {
        "JPEG-lossy.dcm": "corrupt-pixels",  # a non-conformant 12-bit stream (pydicom's README: GDCM-only)
        "JPEG2000-embedded-sequence-delimiter.dcm": "corrupt-pixels",  # 4 codestream bytes overwritten
        "MR_truncated.dcm": "corrupt-pixels",
        "badVR.dcm": "malformed-header",  # NumberOfFrames '1A'
        "meta_missing_tsyntax.dcm": "malformed-header",  # pixel data, but no Rows/Columns/Bits (nor a syntax)
        "nested_priv_SQ.dcm": "malformed-header",
    }
    assert sorted(s["json"]["source"] for s in samples.values() if s["json"]["frame"] == 0) == sorted(decodable)

    # one line per skip, nothing from the libraries at INFO, no tracebacks anywhere
    noisy = [r for r in caplog.records if r.name.split(".")[0] in ("pydicom", "monai", "nibabel", "LoadImage")]
    assert noisy == [] and not any(r.exc_info for r in caplog.records)
    assert all("\n" not in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "Traceback" not in capfd.readouterr().err


def test_nibabel_corpus_every_volume_read_the_rest_named(ingest, caplog, capfd):
    import nibabel as nib

    data = Path(nib.__file__).parent / "tests" / "data"
    files = sorted(p for p in data.iterdir() if p.name.endswith((".nii", ".nii.gz", ".hdr")))
    volumes = []
    for p in files:
        try:
            img = nib.load(p)
            if len(img.shape) in (3, 4) and not type(img).__name__.startswith("Cifti"):
                img.get_fdata()
                volumes.append(p.name)
        except Exception:
            pass
    assert (len(files), len(volumes)) == (11, 7)

    caplog.set_level(logging.INFO)
    caplog.clear()
    capfd.readouterr()
    summary, samples, _ = ingest(NiftiSource, [data], slices="middle")
    assert summary["inputs_seen"] == 11 and summary["samples_written"] == 7
    assert sorted(s["json"]["source"] for s in samples.values()) == volumes
    assert {s["path"]: _reason_kind(s["reason"], NIFTI_KINDS) for s in summary["skipped"]} == {
        "analyze.hdr": "missing-data", "nifti1.hdr": "missing-data", "nifti2.hdr": "missing-data",
        "row_major.dconn.nii": "not-volume",
    }
    assert all(s["image.png"].mode == "L" for s in samples.values())
    noisy = [r for r in caplog.records if r.name.split(".")[0] in ("pydicom", "monai", "nibabel", "LoadImage")]
    assert noisy == [] and not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err


def test_fresh_process_log_has_one_line_per_skip(tmp_path):
    """In a fresh process (as a user or a worker runs it) pydicom's loggers do not exist until it decodes;
    its ERROR tracebacks and warnings must still stay out of the log."""
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("JPEG2000-embedded-sequence-delimiter.dcm", "JPEG-lossy.dcm", "badVR.dcm", "MR_small.dcm"):
        shutil.copy(PYDICOM_FILES / name, folder / name)
    cli = Path(sys.executable).parent / "clipzoo"
    run = subprocess.run([str(cli), "ingest", "biomed", "dicom", str(folder), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    log = run.stdout + run.stderr
    assert "Traceback" not in log and "pydicom" not in log and "Warning" not in log, log[-3000:]
    skip_lines = [line for line in log.splitlines() if "WARNING" in line and "skipped" in line]
    assert len(skip_lines) == 3, log[-3000:]
