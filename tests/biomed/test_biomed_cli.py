"""`clipzoo ingest biomed <source>` through core's CLI, one run per source on the shared files."""

from __future__ import annotations

import json

from clipzoo.core.cli import main


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_cli_jats(shared_data, tmp_path, capsys):
    out = tmp_path / "jats"
    code = main(["ingest", "biomed", "jats", str(shared_data / "biomed" / "pmc_jats"),
                 str(shared_data / "biomed" / "jats_packages"), "--out", str(out), "--licenses", "cc-by,cc0,pd"])
    assert code == 0
    m = _manifest(out)
    assert m["num_samples"] == 1 and m["ingest"]["counters"]["license"] == {"cc-by": 5}
    assert m["source"]["options"]["licenses"] == "cc-by,cc0,pd"
    assert "1 samples from 5 inputs; 9 skipped" in capsys.readouterr().out


def test_cli_dicom(shared_data, tmp_path):
    out = tmp_path / "dicom"
    assert main(["ingest", "biomed", "dicom", str(shared_data / "biomed" / "medical_images" / "dicom"),
                 "--out", str(out), "--max-side", "256"]) == 0
    m = _manifest(out)
    assert m["num_samples"] == 4 and m["ingest"]["counters"]["modality"] == {"CR": 1, "CT": 1, "MR": 1, "US": 1}


def test_cli_nifti(shared_data, tmp_path):
    out = tmp_path / "nifti"
    volume = shared_data / "biomed" / "medical_images" / "nifti" / "anatomical.nii"
    assert main(["ingest", "biomed", "nifti", str(volume), "--out", str(out), "--planes", "axial,sagittal",
                 "--slices", "middle", "--views", "mip", "--modality", "mri"]) == 0
    m = _manifest(out)
    assert m["num_samples"] == 4 and m["ingest"]["notes"]["nifti"]["planes"] == ["axial", "sagittal"]


def test_cli_images_and_bad_option(shared_data, tmp_path):
    out = tmp_path / "images"
    assert main(["ingest", "biomed", "images", str(shared_data / "biomed" / "medical_images"),
                 "--out", str(out), "--max-side", "128"]) == 0
    m = _manifest(out)
    assert m["num_samples"] == 2 and m["ingest"]["notes"]["classes"] == ["fundus", "pathology"]
    assert main(["ingest", "biomed", "nifti", "x.nii", "--out", str(tmp_path / "bad"), "--planes", "oblique"]) == 2
