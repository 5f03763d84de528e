"""NIfTI volumes through MONAI on the shared nibabel/TotalSegmentator files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from clipzoo.biomed.nifti import extract_slice, load_volume, project, scale_intensity
from clipzoo.biomed.sources import NiftiSource


@pytest.fixture(scope="module")
def nifti_dir(shared_data) -> Path:
    return shared_data / "biomed" / "medical_images" / "nifti"


@pytest.fixture(scope="module")
def anatomical(nifti_dir):
    return load_volume(nifti_dir / "anatomical.nii")


def test_las_volume_reoriented_to_ras(anatomical, nifti_dir):
    src = nib.load(nifti_dir / "anatomical.nii")
    assert nib.aff2axcodes(src.affine) == ("L", "A", "S")
    raw = np.asarray(src.dataobj)
    vol = anatomical.data
    assert vol.shape == (33, 41, 25) and anatomical.spacing == (2.0, 2.0, 2.0)
    assert np.array_equal(vol, raw[::-1].astype(np.float32))  # x flipped: L->R
    assert (vol[0, 0, 0], vol[32, 0, 0], vol[16, 20, 12]) == (9595.0, 10712.0, 11881.0)
    assert nib.aff2axcodes(anatomical.affine) == ("R", "A", "S")
    assert (float(vol.min()), float(vol.max())) == (-610.0, 30393.0)


def test_display_slices_are_radiological_rows_columns(anatomical):
    vol = anatomical.data
    axial = extract_slice(vol, "axial", 12)
    assert axial.shape == (41, 33)  # rows = anterior..posterior (y), columns = patient right..left (x)
    assert axial[0, 0] == vol[32, 40, 12] and axial[-1, -1] == vol[0, 0, 12]
    coronal = extract_slice(vol, "coronal", 20)
    assert coronal.shape == (25, 33) and coronal[0, 0] == vol[32, 20, 24]  # superior row first
    sagittal = extract_slice(vol, "sagittal", 16)
    assert sagittal.shape == (25, 41) and sagittal[0, 0] == vol[16, 40, 24]  # anterior on the left
    assert np.array_equal(project(vol, "axial", "mip"), extract_slice(vol.max(axis=2, keepdims=True), "axial", 0))


def test_resampling_with_monai_spacing(nifti_dir):
    vol = load_volume(nifti_dir / "anatomical.nii", spacing=(4.0, 4.0, 4.0))
    assert vol.data.shape == (17, 21, 13) and vol.spacing == (4.0, 4.0, 4.0)


def test_4d_frame_choice(nifti_dir):
    raw = np.asarray(nib.load(nifti_dir / "example4d.nii.gz").dataobj)
    assert raw.shape == (128, 96, 24, 2) and (raw[64, 48, 12, 0], raw[64, 48, 12, 1]) == (265, 266)
    first = load_volume(nifti_dir / "example4d.nii.gz")
    second = load_volume(nifti_dir / "example4d.nii.gz", frame=1)
    mean = load_volume(nifti_dir / "example4d.nii.gz", frame="mean")
    assert first.data.shape == (128, 96, 24) and first.meta["frames"] == 2 and first.meta["frame"] == 0
    x = 127 - 64  # LAS -> RAS flips x
    assert (first.data[x, 48, 12], second.data[x, 48, 12], mean.data[x, 48, 12]) == (265.0, 266.0, 265.5)
    with pytest.raises(ValueError, match="frame 5 out of range"):
        load_volume(nifti_dir / "example4d.nii.gz", frame=5)


def test_ct_hu_window_scaling(nifti_dir):
    ct = load_volume(nifti_dir / "example_ct_sm.nii.gz")
    assert ct.data.shape == (122, 101, 30) and ct.spacing == (3.0, 3.0, 3.0)
    assert (float(ct.data.min()), float(ct.data.max())) == (-1100.0, 1207.0)
    unit = scale_intensity(ct.data, window=(40.0, 400.0))
    assert ct.data[61, 50, 15] == 0.0 and unit[61, 50, 15] == pytest.approx(0.4)  # (0 - -160) / 400
    assert float(unit.min()) == 0.0 and float(unit.max()) == 1.0


def test_source_slices_views_and_recorded_choice(ingest, nifti_dir):
    summary, samples, _ = ingest(
        NiftiSource, [nifti_dir], planes="axial,coronal,sagittal", slices="middle", views="mip", modality="mri",
        body_part="brain",
    )
    assert summary["inputs_seen"] == 3 and summary["samples_written"] == 18  # 3 volumes x 3 planes x (middle + mip)
    axial = samples["anatomical_axial-0012"]
    assert axial["image.png"].size == (33, 41) and axial["image.png"].mode == "L"  # (columns, rows); grey
    meta = axial["json"]
    assert (meta["plane"], meta["kind"], meta["slice_index"], meta["num_slices"]) == ("axial", "slice", 12, 25)
    assert meta["choice"]["intensity"] == {"percentiles": [0.5, 99.5]} and meta["orientation"] == "RAS"
    assert axial["txt"] == "An MRI slice of the brain in the axial plane."
    assert samples["example4d_sagittal-mip"]["json"]["frame"] == 0
    assert samples["example_ct_sm_coronal-0050"]["image.png"].size == (122, 30)
    assert summary["notes"]["nifti"]["views"] == ["mip"]


def test_source_all_axial_slices_skip_empty_and_window(ingest, nifti_dir):
    summary, samples, _ = ingest(NiftiSource, [nifti_dir / "example_ct_sm.nii.gz"], window="soft-tissue", modality="ct",
                                 labels=None)
    empty = summary["counters"].get("empty_slices", {}).get("axial", 0)
    assert len(samples) + empty == 30
    key = "example_ct_sm_axial-0015"
    arr = np.asarray(samples[key]["image.png"])
    assert arr.ndim == 2  # single-channel
    unit = scale_intensity(load_volume(nifti_dir / "example_ct_sm.nii.gz").data, window=(40.0, 400.0))
    assert np.array_equal(arr, np.rint(extract_slice(unit, "axial", 15) * 255).astype(np.uint8))
    assert samples[key]["json"]["choice"]["intensity"] == {"window": [40.0, 400.0]}


def test_corrupt_nifti_skipped(ingest, nifti_dir, tmp_path):
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes((nifti_dir / "example_ct_sm.nii.gz").read_bytes()[:4000])
    summary, samples, _ = ingest(NiftiSource, [bad, nifti_dir / "anatomical.nii"], slices="middle")
    assert list(samples) == ["anatomical_axial-0012"]
    (skip,) = summary["skipped"]
    # named relative to the input (the file itself); the reason is one line, not MONAI's five reader tracebacks
    assert skip["path"] == "cut.nii.gz" and skip["reason"].startswith("unreadable NIfTI: ")
    assert "\n" not in skip["reason"] and "Traceback" not in skip["reason"]


def test_hdr_img_pair_reads_like_the_single_file(ingest, nifti_dir, tmp_path):
    """A NIfTI-1 .hdr/.img pair (nibabel writes one from the real anatomical.nii) gives the same slices."""
    import nibabel as nib

    nib.save(nib.load(nifti_dir / "anatomical.nii"), tmp_path / "pair.hdr")
    assert (tmp_path / "pair.img").is_file()
    _, single, _ = ingest(NiftiSource, [nifti_dir / "anatomical.nii"], out_name="single", slices="middle")
    summary, paired, _ = ingest(NiftiSource, [tmp_path / "pair.hdr"], out_name="paired", slices="middle")
    assert summary["inputs_seen"] == 1 and list(paired) == ["pair_axial-0012"]
    assert np.array_equal(np.asarray(paired["pair_axial-0012"]["image.png"]),
                          np.asarray(single["anatomical_axial-0012"]["image.png"]))
