"""DICOM ingestion on the shared pydicom/NEMA files and on variants of them made here (series, palette, bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from clipzoo.biomed.dicom import DicomReadError, group_series, plane_name, read_dicom, read_header
from clipzoo.biomed.sources import DicomSource

IDENTIFYING = ("CompressedSamples", "1CT1", "4MR1", "9RG1", "13US1", "20040119", "20040826")


@pytest.fixture(scope="module")
def dicom_dir(shared_data) -> Path:
    return shared_data / "biomed" / "medical_images" / "dicom"


@pytest.fixture(scope="module")
def chest_xray(dicom_dir):
    """RG1_J2KI decoded once (1955x1841 JPEG-2000): (display frames, metadata, raw stored values)."""
    frames, meta = read_dicom(dicom_dir / "RG1_J2KI.dcm")
    raw = pydicom.dcmread(dicom_dir / "RG1_J2KI.dcm").pixel_array
    return frames, meta, raw


def test_ct_modality_lut_and_default_soft_tissue_window(dicom_dir):
    raw = pydicom.dcmread(dicom_dir / "CT_small.dcm").pixel_array
    frames, meta = read_dicom(dicom_dir / "CT_small.dcm")
    assert frames.shape == (1, 128, 128) and frames.dtype == np.uint8  # grey stays single-channel
    assert meta["voi"] == {"source": "ct-default:soft-tissue", "center": 40.0, "width": 400.0,
                           "function": "LINEAR", "inverted": False}
    # stored -> HU = stored - 1024 (RescaleIntercept) -> window 40/400 (DICOM linear: (x-39.5)/399+0.5)
    cases = {(0, 48): (958, 60), (0, 49): (1053, 121), (100, 30): (1089, 144), (64, 64): (1928, 255)}
    for (r, c), (stored, shown) in cases.items():
        assert raw[r, c] == stored
        assert frames[0, r, c] == shown
    lung, meta = read_dicom(dicom_dir / "CT_small.dcm", window="lung")
    assert meta["voi"]["source"] == "preset" and lung[0, 0, 49] == 235  # 29 HU in the -600/1500 window


def test_mr_window_from_file(dicom_dir):
    frames, meta = read_dicom(dicom_dir / "MR_small.dcm")
    assert meta["voi"]["source"] == "file" and (meta["voi"]["center"], meta["voi"]["width"]) == (600.0, 1600.0)
    # stored 905, 182, 1104 (no rescale) in window 600/1600
    assert (frames[0, 0, 0], frames[0, 32, 32], frames[0, 10, 50]) == (176, 61, 208)


def test_rgb_ultrasound_passes_through(dicom_dir):
    frames, meta = read_dicom(dicom_dir / "examples_rgb_color.dcm")
    assert frames.shape == (1, 240, 320, 3)
    assert np.array_equal(frames[0], pydicom.dcmread(dicom_dir / "examples_rgb_color.dcm").pixel_array)
    assert meta["modality"] == "US" and meta["voi"] == {"source": "color"}


def test_j2k_monochrome1_decoded_windowed_and_inverted(chest_xray, dicom_dir):
    frames, meta, raw = chest_xray
    assert frames.shape == (1, 1955, 1841)
    assert meta["transfer_syntax"] == "1.2.840.10008.1.2.4.91"
    assert meta["photometric_interpretation"] == "MONOCHROME1" and meta["voi"]["inverted"] is True
    assert (meta["modality"], meta["body_part"], meta["view_position"]) == ("CR", "CHEST", "PA")
    # stored values from the J2K codestream; window 15000/30000 from the file; MONOCHROME1: 255 - windowed
    for (r, c), (stored, shown) in {(0, 0): (18876, 95), (977, 920): (3342, 227), (1954, 1840): (2856, 231)}.items():
        assert raw[r, c] == stored
        assert frames[0, r, c] == shown
    assert (int(raw.min()), int(raw.max())) == (803, 26512)


def test_j2k_both_decoder_plugins_agree(chest_xray, dicom_dir):
    ds = pydicom.dcmread(dicom_dir / "RG1_J2KI.dcm")
    ds.pixel_array_options(decoding_plugin="pylibjpeg")
    assert np.array_equal(ds.pixel_array, chest_xray[2])  # the fixture's decode used the default (Pillow) plugin


def test_axis_convention_monai_transposes_pydicom_does_not(chest_xray, dicom_dir):
    from monai.transforms import LoadImage

    from clipzoo.biomed.nifti import load_2d_monai

    path = dicom_dir / "RG1_J2KI.dcm"
    monai_raw = np.asarray(LoadImage(image_only=True, reader="PydicomReader")(str(path)))
    assert monai_raw.shape == (1841, 1955)  # MONAI: (width, height)
    ours = load_2d_monai(path, reader="PydicomReader")
    assert ours.shape == (1955, 1841) and np.array_equal(ours, chest_xray[2])  # rows, columns like pydicom/PIL


def test_metadata_has_no_identifying_tags(chest_xray, dicom_dir):
    for name in ("CT_small.dcm", "MR_small.dcm", "examples_rgb_color.dcm"):
        text = json.dumps(read_header(dicom_dir / name).meta)
        assert not any(s in text for s in IDENTIFYING), text
    text = json.dumps(chest_xray[1])
    assert not any(s in text for s in IDENTIFYING) and "SeriesInstanceUID" not in text
    assert "1.3.6.1.4.1.5962.1.3.9.1.20040826185059.5457" not in text  # the UID only as a hash


def _series_copy(src: Path, dest: Path, z: float, instance: int) -> Path:
    ds = pydicom.dcmread(src)
    ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], z]
    ds.InstanceNumber = instance
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(dest)
    return dest


def test_series_grouped_and_ordered_along_normal(ingest, dicom_dir, tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    # instance numbers deliberately disagree with the geometry
    for name, z, inst in (("a.dcm", -60.0, 1), ("b.dcm", -80.0, 2), ("c.dcm", -70.0, 3)):
        _series_copy(dicom_dir / "CT_small.dcm", folder / name, z, inst)
    (folder / "mr.dcm").write_bytes((dicom_dir / "MR_small.dcm").read_bytes())
    headers = [read_header(p) for p in sorted(folder.glob("*.dcm"))]
    series = group_series(headers)
    assert sorted(len(v) for v in series.values()) == [1, 3]
    ct = next(v for v in series.values() if len(v) == 3)
    assert [h.path.name for h in ct] == ["b.dcm", "c.dcm", "a.dcm"]
    assert [h.position for h in ct] == [-80.0, -70.0, -60.0]
    assert plane_name([1, 0, 0, 0, 1, 0]) == "axial" and plane_name([1, 0, 0, 0, 0, -1]) == "coronal"

    summary, samples, _ = ingest(DicomSource, [folder])
    assert summary["samples_written"] == 4 and summary["counters"]["dicom"] == {"series": 2}
    ct_samples = sorted((s["json"]["series_index"], Path(s["json"]["source"]).name) for s in samples.values()
                        if s["json"]["modality"] == "CT")
    assert ct_samples == [(0, "b.dcm"), (1, "c.dcm"), (2, "a.dcm")]
    one = next(s for s in samples.values() if s["json"]["source"].endswith("b.dcm"))
    assert one["txt"] == "A computed tomography slice in the axial plane."
    assert [c["text"] for c in json.loads(json.dumps(one["captions.json"]))] == [
        "A computed tomography slice in the axial plane.", "A CT scan."]
    assert one["image.png"].size == (128, 128) and one["image.png"].mode == "L"  # CT slice: one channel
    _, middle, _ = ingest(DicomSource, [folder], out_name="middle", slices="middle")
    assert sorted(Path(s["json"]["source"]).name for s in middle.values()) == ["c.dcm", "mr.dcm"]


def test_multiframe_palette_and_ybr(dicom_dir, tmp_path):
    ct = pydicom.dcmread(dicom_dir / "CT_small.dcm")
    stored = ct.pixel_array
    ct.PixelData = np.stack([stored, stored + 100]).astype(stored.dtype).tobytes()
    ct.NumberOfFrames = 2
    ct.save_as(tmp_path / "multi.dcm")
    frames, meta = read_dicom(tmp_path / "multi.dcm")
    assert frames.shape == (2, 128, 128) and meta["number_of_frames"] == 2
    assert (frames[0, 0, 49], frames[1, 0, 49]) == (121, 185)  # 29 HU and 129 HU, soft-tissue window

    us = pydicom.dcmread(dicom_dir / "examples_rgb_color.dcm")
    rgb = us.pixel_array
    pal_img = Image.fromarray(rgb).quantize(colors=8)
    palette = np.array(pal_img.getpalette()[: 8 * 3], dtype=np.uint16).reshape(8, 3)
    pal = pydicom.dcmread(dicom_dir / "examples_rgb_color.dcm")
    pal.PhotometricInterpretation = "PALETTE COLOR"
    pal.SamplesPerPixel = 1
    del pal.PlanarConfiguration
    pal.PixelData = np.asarray(pal_img, dtype=np.uint8).tobytes()
    for i in range(3):  # (0028,110x) descriptors and (0028,120x) data for red, green, blue
        pal.add_new(0x00281101 + i, "US", [8, 0, 16])
        pal.add_new(0x00281201 + i, "OW", (palette[:, i] * 257).astype("<u2").tobytes())
    pal.save_as(tmp_path / "palette.dcm")
    frames, meta = read_dicom(tmp_path / "palette.dcm")
    assert meta["voi"] == {"source": "palette", "lut_bits": 16}
    assert np.array_equal(frames[0], palette[np.asarray(pal_img)].astype(np.uint8))

    from pydicom.pixels import convert_color_space

    ybr = pydicom.dcmread(dicom_dir / "examples_rgb_color.dcm")
    ybr.PixelData = convert_color_space(rgb, "RGB", "YBR_FULL").tobytes()
    ybr.PhotometricInterpretation = "YBR_FULL"
    ybr.save_as(tmp_path / "ybr.dcm")
    frames, _ = read_dicom(tmp_path / "ybr.dcm")
    assert np.abs(frames[0].astype(int) - rgb.astype(int)).max() <= 2  # YBR -> RGB round trip


def test_bad_dicoms_skipped_with_reasons_rest_goes_on(ingest, dicom_dir, tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless, MPEG2MPML

    bad = tmp_path / "bad"
    bad.mkdir()
    ds = pydicom.dcmread(dicom_dir / "CT_small.dcm")
    del ds.PixelData
    ds.save_as(bad / "nopixels.dcm")
    for name, syntax in (("jpegls.dcm", JPEGLSLossless), ("mpeg2.dcm", MPEG2MPML)):
        ds = pydicom.dcmread(dicom_dir / "CT_small.dcm")
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + b"\x00" * 64])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.save_as(bad / name)
    (bad / "notdicom.dcm").write_text("this is not a DICOM file")
    (bad / "good.dcm").write_bytes((dicom_dir / "MR_small.dcm").read_bytes())

    with pytest.raises(DicomReadError, match="not an image object: no pixel data"):
        read_dicom(bad / "nopixels.dcm")
    summary, samples, _ = ingest(DicomSource, [bad])
    assert [s["json"]["modality"] for s in samples.values()] == ["MR"]
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert reasons["nopixels.dcm"].startswith("not an image object: no pixel data")
    # a JPEG-LS decoder is installed (pyjpegls): a stream it rejects is damaged data, not a missing plugin
    assert reasons["jpegls.dcm"].startswith("corrupt pixel data: JPEG-LS Lossless Image Compression data the installed")
    assert reasons["mpeg2.dcm"].startswith("unsupported transfer syntax: 1.2.840.10008.1.2.4.100 (MPEG2")
    assert reasons["notdicom.dcm"].startswith("not a DICOM file")
    assert summary["inputs_seen"] == 5 and summary["inputs_skipped"] == 4
    assert summary["counters"]["skip_reasons"] == {"corrupt-pixels": 1, "not-dicom": 1, "not-image": 1,
                                                   "unsupported-syntax": 1}


def test_dicom_labels_csv_give_label_captions(ingest, dicom_dir, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,findings\n{dicom_dir / 'MR_small.dcm'},lesion;edema\n")
    _, samples, _ = ingest(DicomSource, [dicom_dir / "MR_small.dcm"], labels=str(csv))
    (sample,) = samples.values()
    assert sample["json"]["labels"] == ["lesion", "edema"]
    assert sample["txt"] == "An MRI scan showing lesion and edema."


@pytest.mark.parametrize("bits, scale", [(8, 8), (16, 32)])
def test_voi_lut_sequence(dicom_dir, tmp_path, bits, scale):
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(dicom_dir / "MR_small.dcm")
    item = Dataset()
    item.add_new(0x00283002, "US", [2048, 0, bits])  # LUT Descriptor: entries, first mapped value, bits
    lut = np.arange(2048) // 8 if bits == 8 else np.arange(2048) * 32
    item.add_new(0x00283006, "US", [int(v) for v in lut])  # LUT Data
    item.LUTExplanation = "linear"
    ds.VOILUTSequence = [item]  # takes precedence over the file's window 600/1600
    ds.save_as(tmp_path / "voi.dcm")
    frames, meta = read_dicom(tmp_path / "voi.dcm")
    assert meta["voi"]["source"] == "voi-lut"
    top = 2**bits - 1
    # stored 905, 182, 1104 (> 255: an 8-bit LUT must still be indexed with the full value), 2145 clamps to the end
    for (r, c), stored in {(0, 0): 905, (32, 32): 182, (10, 50): 1104}.items():
        assert frames[0, r, c] == round(lut[stored] / top * 255)
    assert frames[0].max() == round(lut[-1] / top * 255)


def test_all_files_reads_extensionless_dicom(ingest, dicom_dir, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "IM000001").write_bytes((dicom_dir / "MR_small.dcm").read_bytes())
    (folder / "README").write_text("exported by a PACS")
    summary, samples, _ = ingest(DicomSource, [folder], all_files=True)
    assert [s["json"]["modality"] for s in samples.values()] == ["MR"]
    assert [(Path(s["path"]).name, s["reason"][:16]) for s in summary["skipped"]] == [("README", "not a DICOM file")]


def test_rle_compressed_copy_decodes_like_the_original(dicom_dir, tmp_path):
    from pydicom.uid import RLELossless

    ds = pydicom.dcmread(dicom_dir / "CT_small.dcm")
    ds.compress(RLELossless)  # pydicom's own RLE encoder
    ds.save_as(tmp_path / "rle.dcm")
    frames, meta = read_dicom(tmp_path / "rle.dcm")
    assert meta["transfer_syntax"] == "1.2.840.10008.1.2.5"
    assert np.array_equal(frames, read_dicom(dicom_dir / "CT_small.dcm")[0])


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm",
                                  "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm"])
def test_pixel_read_after_the_header_pass_reads_only_the_rest(name, tmp_path):
    """read_dicom given read_header's result continues from the pixel data's offset (deflated: reads it all):
    the same frames and metadata as a read from scratch, and the header gives its parsed dataset up."""
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file(name))
    header = read_header(path)
    deflated = name == "image_dfl.dcm"
    assert (header.pixel_offset is None) == deflated and header.dataset is not None
    assert "PixelData" not in header.dataset
    frames, meta = read_dicom(path, header=header)
    expected, expected_meta = read_dicom(path)
    assert np.array_equal(frames, expected) and meta == expected_meta
    assert header.dataset is None  # handed over: a series' headers do not keep every slice's pixels


def test_a_file_replaced_after_its_header_pass_is_read_whole(dicom_dir, tmp_path):
    path = tmp_path / "slice.dcm"
    path.write_bytes((dicom_dir / "CT_small.dcm").read_bytes())
    header = read_header(path)
    # replaced by another image with a different header length: the old offset would point into the header
    path.write_bytes((dicom_dir / "MR_small.dcm").read_bytes())
    frames, _ = read_dicom(path, header=header)
    assert np.array_equal(frames, read_dicom(dicom_dir / "MR_small.dcm")[0])
