"""The engine's own skips of inputs that raise keep to the source's path policy, in their reasons and logs too.

OSError, PIL and pydicom messages quote the input's absolute path, and clinical exports are often named after
the patient (``SURNAME^GIVEN_19610704/IM0001.dcm``). The skip's ``path`` follows the source's ``record_path``
(below the named input, or hashed); its reason and the log lines about it must not carry the raw path back,
and neither must the DICOM source's own skips of files its reader fails on. The inputs are real DICOM files
(pydicom's test corpus) in a patient-named export folder.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest
from engine_helpers import RaisingSource

from clipzoo.core.ingest import IngestReport, run_ingest

PATIENT = "DOE^JANE_19610704"


class AbsolutePathRaisingSource(RaisingSource):
    """``RaisingSource`` naming inputs as the wrapped source does, whose failing read raises as ``os.rename``
    across devices would: an OSError quoting the input's absolute path and the absolute path of its folder."""

    def record_path(self, path: str | Path) -> str:
        return self.inner.record_path(path)

    def samples(self, inputs, report):
        for item in inputs:
            if self.bad in str(item):
                path = Path(item).absolute()
                raise OSError(errno.EXDEV, "Invalid cross-device link", str(path), None, str(path.parent.parent))
            yield from self.inner.samples([item], report)


def _export(shared_data: Path, root: Path) -> Path:
    """``root/exports/DOE^JANE_19610704/study/series1/IM000{1,2}.dcm``; returns the named input (``study``)."""
    dicom_dir = shared_data / "biomed" / "medical_images" / "dicom"
    series = root / "exports" / PATIENT / "study" / "series1"
    series.mkdir(parents=True)
    for i, name in enumerate(("CT_small.dcm", "MR_small.dcm"), start=1):
        (series / f"IM000{i}.dcm").write_bytes((dicom_dir / name).read_bytes())
    return series.parent


@pytest.mark.parametrize("mode", ["relative", "hashed"])
def test_a_raising_input_is_skipped_without_its_absolute_path(mode, shared_data, tmp_path, caplog):
    from clipzoo.biomed.sources import DicomSource

    named = _export(shared_data, tmp_path)
    source = DicomSource(DicomSource.default_options(max_side=32, source_paths=mode))
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG, logger="clipzoo"):
        summary = run_ingest(AbsolutePathRaisingSource(source, "IM0001"), [named], out, progress=False,
                             unit_size=64)
    errors = [s for s in summary["skipped"] if s["kind"] == "error"]
    bad = named / "series1" / "IM0001.dcm"
    recorded = source.record_path(bad)
    assert recorded == ("series1/IM0001.dcm" if mode == "relative" else recorded)
    assert recorded.startswith("sha256:") == (mode == "hashed")
    assert errors == [{"path": recorded, "kind": "error",
                       "reason": f"OSError: [Errno {errno.EXDEV}] Invalid cross-device link: '{recorded}' -> "
                                 f"'<input folder>'"}]
    assert summary["samples_written"] == 1  # the other file of the unit is read again without the bad one
    written = [(out / "manifest.json").read_text(), *(p.read_text() for p in (out / "_units").glob("*.json"))]
    leaks = [str(tmp_path / "exports"), PATIENT, "DOE", "19610704"] + (["IM0001"] if mode == "hashed" else [])
    assert caplog.records and any("raised" in r.getMessage() for r in caplog.records)  # the DEBUG lines were seen
    for text, where in [*((t, "manifest/unit records") for t in written), (caplog.text, "log")]:
        assert not [leak for leak in leaks if leak in text], where


def test_a_dicom_file_gone_before_its_pixels_are_read_is_skipped_without_its_absolute_path(shared_data, tmp_path):
    """The DICOM source's own skips too: a file deleted between the header pass and its pixel read (the reader's
    FileNotFoundError quotes the absolute path) is named as the source names it, in path and reason alike."""
    from clipzoo.biomed.sources import DicomSource

    named = _export(shared_data, tmp_path)
    for mode in ("relative", "hashed"):
        source = DicomSource(DicomSource.default_options(max_side=32, source_paths=mode))
        report = IngestReport()
        samples = source.samples([named], report)
        first = next(samples)  # every header of the call is read before its first sample
        gone = named / "series1" / ("IM0002.dcm" if first["json"]["modality"] == "CT" else "IM0001.dcm")
        content = gone.read_bytes()
        gone.unlink()
        assert list(samples) == []
        gone.write_bytes(content)
        recorded = source.names([named])(gone)  # as samples() names a file of its named folder
        assert [s["path"] for s in report.skipped] == [recorded]
        reason = report.skipped[0]["reason"]
        assert reason == f"malformed header: FileNotFoundError: [Errno {errno.ENOENT}] No such file or directory: " \
                         f"'{recorded}'"
        assert (recorded == "series1/" + gone.name) == (mode == "relative")


@pytest.mark.parametrize("source_name, mode", [("DicomSource", "relative"), ("DicomSource", "hashed"),
                                               ("NiftiSource", "hashed"), ("ImagesSource", "relative")])
def test_a_missing_input_is_skipped_under_its_recorded_name(source_name, mode, shared_data, tmp_path):
    """A named file that is gone (deleted before its unit runs, a typo) is skipped under the name the path policy
    gives it, not the path as typed: that path carries the patient-named export folder."""
    from clipzoo.biomed import sources

    named = _export(shared_data, tmp_path)
    gone = tmp_path / "exports" / PATIENT / "IM0009.dcm"
    cls = getattr(sources, source_name)
    source = cls(cls.default_options(source_paths=mode))
    summary = run_ingest(source, [named, gone], tmp_path / "out", progress=False)
    [skip] = [s for s in summary["skipped"] if s["reason"] == "no such file or folder"]
    assert skip["path"] == ("IM0009.dcm" if mode == "relative" else source.record_path(gone))
    assert "DOE" not in (tmp_path / "out" / "manifest.json").read_text()


@pytest.mark.parametrize("mode", ["relative", "hashed"])
def test_a_truncated_nifti_is_skipped_without_the_path_nibabel_quotes(mode, shared_data, tmp_path):
    """nibabel's error for a truncated volume ends "... from /abs/path/file.nii": the skip's reason names the file
    as the skip's path does."""
    from clipzoo.biomed.sources import NiftiSource

    study = tmp_path / "exports" / PATIENT / "study"
    study.mkdir(parents=True)
    real = shared_data / "biomed" / "medical_images" / "nifti" / "anatomical.nii"
    (study / "T1w.nii").write_bytes(real.read_bytes()[:500])
    source = NiftiSource(NiftiSource.default_options(source_paths=mode))
    summary = run_ingest(source, [study], tmp_path / "out", progress=False)
    [skip] = summary["skipped"]
    assert skip["reason"].startswith("unreadable NIfTI: OSError: Expected ")
    assert skip["reason"].endswith(f"from {skip['path']}")
    assert "DOE" not in (tmp_path / "out" / "manifest.json").read_text()
