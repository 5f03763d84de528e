"""No identifying data in shards, manifests or logs (issue 11.3).

Identifying values are planted in real corpus files copied into a patient-named export folder: patient name,
birth date and id, institution, every free-text tag, a BurnedInAnnotation flag, NIfTI header text. After an
ingest through the CLI, every byte of every shard member (names and contents), the manifest and everything the
run logged or printed are searched for each planted value.
"""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path

import pydicom
import pytest

from clipzoo.core.cli import main

PATIENT_DIR = "SURNAME^GIVEN_19610704"
PLANTED = ("SURNAME", "GIVEN", "19610704", "PID778899", "Quirkle", "Zebulon", "Xylophage", "Wobbleton")
FREE_TEXT = {
    "SeriesDescription": "CT chest for Zebulon Quirkle",
    "StudyDescription": "Quirkle follow-up",
    "ImageComments": "patient Zebulon said hello",
    "ProtocolName": "QUIRKLE protocol",
    "PerformedProcedureStepDescription": "Xylophage chest",
    "RequestedProcedureDescription": "requested by Dr Wobbleton",
}


def _plant(src: Path, dest: Path, **extra) -> None:
    ds = pydicom.dcmread(src)
    ds.PatientName = "SURNAME^GIVEN"
    ds.PatientBirthDate = "19610704"
    ds.PatientID = "PID778899"
    ds.InstitutionName = "Wobbleton General"
    ds.ReferringPhysicianName = "Wobbleton^Xylophage"
    for keyword, value in {**FREE_TEXT, **extra}.items():
        setattr(ds, keyword, value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)


@pytest.fixture
def export(shared_data, tmp_path) -> Path:
    """export/SURNAME^GIVEN_19610704/: two planted slices, one burned-in X-ray, one file that is not DICOM."""
    dicom = shared_data / "biomed" / "medical_images" / "dicom"
    root = tmp_path / "export"
    _plant(dicom / "CT_small.dcm", root / PATIENT_DIR / "IM0001.dcm")
    _plant(dicom / "MR_small.dcm", root / PATIENT_DIR / "IM0002.dcm")
    _plant(dicom / "CT_small.dcm", root / PATIENT_DIR / "IM0003.dcm", BurnedInAnnotation="YES")
    (root / PATIENT_DIR / "IM0004.dcm").write_text("Zebulon Quirkle's discharge letter, not DICOM")
    return root


def _everything_written(out: Path) -> str:
    """Every shard member's name and bytes (latin-1, so any byte string can be searched) and every other file."""
    parts = [(out / "manifest.json").read_text(encoding="utf-8")]
    manifest = json.loads(parts[0])
    assert manifest["shards"], "nothing was written"
    for shard in manifest["shards"]:
        with tarfile.open(out / shard["name"]) as tar:
            for member in tar:
                parts.append(member.name)
                parts.append(tar.extractfile(member).read().decode("latin-1"))
    # and every other file the run left in the folder (the engine's unit plan and done records included)
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.name.endswith(".tar"):
            parts.append(path.relative_to(out).as_posix())
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def _ingest(args: list[str], caplog, capfd) -> str:
    caplog.clear()
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="clipzoo"):
        assert main(["ingest", "biomed", *args]) == 0
    captured = capfd.readouterr()
    return "\n".join([captured.out, captured.err, *(r.getMessage() for r in caplog.records)])


def _samples(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    found = []
    for shard in manifest["shards"]:
        with tarfile.open(out / shard["name"]) as tar:
            found += [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")
                      and not m.name.endswith("captions.json")]
    return found


def test_dicom_export_leaves_no_identifying_value(export, tmp_path, caplog, capfd):
    # the user names the patient folder itself: sources are named below it
    out = tmp_path / "named-folder"
    log = _ingest(["dicom", str(export / PATIENT_DIR), "--out", str(out)], caplog, capfd)
    written = _everything_written(out)
    for value in PLANTED:
        assert value not in written, value
        assert value not in log, value
    samples = _samples(out)
    assert sorted(s["source"] for s in samples) == ["IM0001.dcm", "IM0002.dcm"]
    manifest = json.loads((out / "manifest.json").read_text())
    skips = {s["path"]: s for s in manifest["ingest"]["skipped"]}
    assert skips["IM0003.dcm"]["kind"] == "policy" and skips["IM0003.dcm"]["reason"].startswith("burned-in annotation")
    assert skips["IM0004.dcm"]["reason"].startswith("not a DICOM file")
    assert manifest["ingest"]["counters"]["skip_reasons"]["burned-in"] == 1

    # the user names the export root above patient-named folders: --source-paths hashed
    out = tmp_path / "hashed"
    log = _ingest(["dicom", str(export), "--source-paths", "hashed", "--out", str(out)], caplog, capfd)
    written = _everything_written(out)
    for value in PLANTED:
        assert value not in written, value
        assert value not in log, value
    sources = sorted(s["source"] for s in _samples(out))
    assert len(sources) == 2 and all(s.startswith("sha256:") and len(s) == 23 for s in sources)


def test_dicom_free_text_and_burned_in_are_opt_in(export, tmp_path, caplog, capfd):
    out = tmp_path / "opted-in"
    _ingest(["dicom", str(export / PATIENT_DIR), "--free-text", "--keep-burned-in", "--out", str(out)],
            caplog, capfd)
    samples = _samples(out)
    assert len(samples) == 3  # the burned-in slice is kept
    assert all(s["free_text"]["series_description"] == FREE_TEXT["SeriesDescription"] for s in samples)
    assert samples[0]["free_text"]["requested_procedure_description"] == "requested by Dr Wobbleton"
    written = _everything_written(out)
    assert "Quirkle" in written  # what the default run kept out is really in these files
    for value in ("SURNAME", "19610704", "PID778899", "Wobbleton General"):  # names/ids/dates: never
        assert value not in written, value


def test_nifti_header_text_is_opt_in(shared_data, tmp_path, caplog, capfd):
    import nibabel as nib

    src = shared_data / "biomed" / "medical_images" / "nifti" / "anatomical.nii"
    if not src.is_file():
        src = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    img = nib.load(src)
    img.header["descrip"] = b"Zebulon Quirkle 19610704"
    img.header["aux_file"] = b"quirkle.aux"
    img.header["intent_name"] = b"Xylophage"
    folder = tmp_path / "nexport" / PATIENT_DIR
    folder.mkdir(parents=True)
    nib.save(img, folder / "SURNAME_GIVEN_head.nii")

    out = tmp_path / "nifti-hashed"
    log = _ingest(["nifti", str(folder.parent), "--slices", "middle", "--source-paths", "hashed", "--out", str(out)],
                  caplog, capfd)
    written = _everything_written(out)
    for value in PLANTED:
        assert value not in written, value
        assert value not in log, value

    out = tmp_path / "nifti-free-text"
    _ingest(["nifti", str(folder), "--slices", "middle", "--free-text", "--out", str(out)], caplog, capfd)
    (sample,) = _samples(out)
    assert sample["free_text"] == {"descrip": "Zebulon Quirkle 19610704", "aux_file": "quirkle.aux",
                                   "intent_name": "Xylophage"}
    # relative mode names a file below the named input as it is (here a patient-named file, hence hashed above)
    assert sample["source"] == "SURNAME_GIVEN_head.nii"
