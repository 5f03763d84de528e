"""2-D medical images with labels from folders or a CSV, and UniMed-style caption templates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipzoo.biomed.captions import CaptionTemplates, builtin_templates, canonical_modality, join_labels
from clipzoo.biomed.sources import ImagesSource


@pytest.fixture(scope="module")
def images_dir(shared_data) -> Path:
    return shared_data / "biomed" / "medical_images"


def test_join_labels_and_modality_aliases():
    assert join_labels(["diabetic_retinopathy"]) == "diabetic retinopathy"
    assert join_labels(["a", "b", "c"]) == "a, b and c"
    assert [canonical_modality(m) for m in ("CR", "MR", "US")] == ["xray", "mri", "ultrasound"]
    assert canonical_modality("PET") == "generic"


def test_templates_by_modality_labelled_and_unlabelled():
    t = CaptionTemplates()
    assert t.captions("CR", ["cardiomegaly", "pleural effusion"], body_part="chest") == [
        "An X-ray showing cardiomegaly and pleural effusion.",
        "An X-ray image with findings of cardiomegaly and pleural effusion.",
        "A radiograph of the chest showing cardiomegaly and pleural effusion.",
        "This X-ray shows signs of cardiomegaly and pleural effusion.",
        "Cardiomegaly and pleural effusion seen on an X-ray.",
    ]
    assert t.captions("xray", [], body_part="chest") == [
        "A radiograph of the chest.", "An X-ray image of the chest.", "A plain radiograph."]
    assert t.captions("fundus", ["glaucoma"], max_variants=2) == [
        "A fundus photograph showing glaucoma.", "A retinal image with signs of glaucoma."]
    for modality in ("xray", "ct", "mri", "ultrasound", "fundus", "pathology", "microscopy", "generic"):
        assert len(builtin_templates(modality)) >= 5


def test_user_template_files(tmp_path):
    text = tmp_path / "llm.txt"
    text.write_text("# written by an LLM\nRetina with {label}, photographed.\n")
    assert CaptionTemplates.from_file(text).captions("fundus", ["drusen"], max_variants=2) == [
        "Retina with drusen, photographed.", "A fundus photograph showing drusen."]
    js = tmp_path / "llm.json"
    js.write_text(json.dumps({"OP": ["Fundus image: {label}."], "*": ["Image of {label}."]}))
    assert CaptionTemplates.from_file(js, replace=True).captions("fundus", ["drusen"]) == [
        "Fundus image: drusen.", "Image of drusen."]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(["not", "a", "mapping"]))
    with pytest.raises(ValueError, match="expected a JSON object"):
        CaptionTemplates.from_file(bad)


def test_folder_labels_classes_and_captions(ingest, images_dir, tmp_path):
    root = tmp_path / "fundus"
    for label in ("normal", "diabetic_retinopathy"):
        (root / label).mkdir(parents=True)
        shutil.copy(images_dir / "fundus" / "retina.jpg", root / label / "retina.jpg")
    summary, samples, _ = ingest(ImagesSource, [root], modality="fundus", max_side=512)
    assert sorted(samples) == ["diabetic_retinopathy_retina", "normal_retina"]
    dr = samples["diabetic_retinopathy_retina"]
    assert dr["txt"] == "A fundus photograph showing diabetic retinopathy."
    assert len(dr["captions.json"]) == 5 and dr["cls"] == "0" and samples["normal_retina"]["cls"] == "1"
    meta = dr["json"]
    assert (meta["original_width"], meta["original_height"], meta["width"], meta["height"]) == (1411, 1411, 512, 512)
    assert meta["labels"] == ["diabetic_retinopathy"] and meta["class_index"] == 0
    assert summary["notes"]["classes"] == ["diabetic_retinopathy", "normal"]
    assert summary["counters"]["labels"] == {"diabetic_retinopathy": 1, "normal": 1}


def test_csv_labels_multi_label_and_unlisted(ingest, images_dir, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text(f"image,findings\n{images_dir / 'pathology' / 'ihc.png'},colonic glands;DAB staining\n")
    summary, samples, _ = ingest(ImagesSource, [images_dir / "pathology", images_dir / "fundus"],
                                 modality="pathology", labels=str(csv), stain="IHC")
    ihc = samples["colonic-glands_ihc"]
    assert ihc["txt"] == "A histopathology image showing colonic glands and DAB staining."
    assert [c["text"] for c in ihc["captions.json"]][2] == (
        "A tissue section with IHC staining showing colonic glands and DAB staining.")
    assert np.array_equal(np.asarray(ihc["image.png"]), np.asarray(Image.open(images_dir / "pathology" / "ihc.png")))
    assert "cls" not in ihc  # multi-label: no single class index
    retina = samples["unlabeled_retina"]  # not in the CSV: kept with label-free captions
    assert retina["txt"] == "A histopathology image of a tissue section with IHC staining."
    _, skipped, _ = ingest(ImagesSource, [images_dir / "fundus"], out_name="skip", labels=str(csv), unlabeled="skip")
    assert skipped == {}


def test_unreadable_image_skipped_rest_goes_on(ingest, images_dir, tmp_path):
    root = tmp_path / "imgs" / "normal"
    root.mkdir(parents=True)
    (root / "cut.jpg").write_bytes((images_dir / "fundus" / "retina.jpg").read_bytes()[:3000])
    (root / "empty.png").write_bytes(b"")
    shutil.copy(images_dir / "pathology" / "ihc.png", root / "ihc.png")
    summary, samples, _ = ingest(ImagesSource, [tmp_path / "imgs"], modality="pathology")
    assert list(samples) == ["normal_ihc"]
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert reasons["cut.jpg"].startswith("cannot decode image")
    assert reasons["empty.png"].startswith("not a readable image")


def test_grey_images_stay_single_channel(ingest, shared_data, tmp_path):
    """X-ray PNGs exported from the real JPEG-2000 chest radiograph: 8-bit grey stays L, 16-bit becomes 8-bit L
    (own min..max), and colour images stay RGB."""
    import pydicom

    ds = pydicom.dcmread(shared_data / "biomed" / "medical_images" / "dicom" / "RG1_J2KI.dcm")
    raw = ds.pixel_array[::8, ::8]  # stored 15-bit values, 245x231
    folder = tmp_path / "xray" / "chest"
    folder.mkdir(parents=True)
    Image.fromarray((raw >> 7).astype(np.uint8), "L").save(folder / "grey8.png")
    Image.fromarray(raw.astype(np.uint16)).save(folder / "grey16.png")
    shutil.copy(shared_data / "biomed" / "medical_images" / "fundus" / "retina.jpg", folder / "colour.jpg")
    _, samples, _ = ingest(ImagesSource, [tmp_path / "xray"], modality="xray", max_side=4096)
    images = {k.split("_", 1)[1]: s["image.png"] for k, s in samples.items()}
    assert {k: v.mode for k, v in images.items()} == {"grey8": "L", "grey16": "L", "colour": "RGB"}
    assert np.array_equal(np.asarray(images["grey8"]), (raw >> 7).astype(np.uint8))
    lo, hi = float(raw.min()), float(raw.max())
    expected = np.rint((raw.astype(np.float64) - lo) / (hi - lo) * 255.0).astype(np.uint8)
    assert np.array_equal(np.asarray(images["grey16"]), expected)
