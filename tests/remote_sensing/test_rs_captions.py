"""Caption corpora: readers on the real AMFMN/COCO files, the captions source end to end, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from rs_helpers import make_options, read_shards

from clipzoo.core.ingest import IngestError, run_ingest
from clipzoo.remote_sensing.captions import (
    CaptionFormatError,
    ImageIndex,
    read_caption_json,
    read_coco_captions,
    read_precomp,
    read_rsicd_json,
)
from clipzoo.remote_sensing.sources import CaptionsSource

UCM_91 = [
    "There is a piece of farmland .",
    "There is a piece of cropland .",
    "It is a piece of farmland .",
    "It is a piece of cropland .",
    "Here is a piece of farmland .",
]
AIRPORT_17 = "two planes are in an airport near a large parking lot ."  # PROVENANCE: RSICD train caps 391-395
SQUARE_102 = "two buildings and some green trees are in a square ."


# -- readers ----------------------------------------------------------------------------------
def test_ucm_precomp_counts_and_captions(rs_data):
    recs = read_precomp(rs_data / "captions" / "ucm_precomp", "test")
    assert len(recs) == 210
    assert sum(len(r.captions) for r in recs) == 1050
    assert {len(r.captions) for r in recs} == {5}
    assert recs[0].image == "91.tif" and recs[0].split == "test"
    assert [c.text for c in recs[0].captions] == UCM_91
    assert {c.lang for r in recs for c in r.captions} == {"en"}


def test_rsitmd_precomp_counts_and_captions(rs_data):
    recs = read_precomp(rs_data / "captions" / "rsitmd_precomp", "test", lang="en")
    assert (len(recs), sum(len(r.captions) for r in recs)) == (452, 2260)
    assert recs[0].image == "boat_0.tif"
    assert recs[0].captions[0].text == "Two large ships loaded with cargo were moored on both sides of the gray port."
    assert recs[1].image == "playground_1.tif"
    assert recs[1].captions[0].text == "One side of the four ping pong balls is bare."


def test_rsicd_coco_counts_and_captions(rs_data):
    fmt, recs = read_caption_json(rs_data / "captions" / "rsicd_coco" / "captions_val2017.json")
    assert fmt == "coco"
    assert (len(recs), sum(len(r.captions) for r in recs)) == (1092, 5460)
    first = recs[0]
    assert (first.image, first.image_id, first.split) == ("square_221.jpg", "8736", "val")
    assert first.captions[0].text == "some buildings and green trees are around a square ."


def test_rsicd_dataset_json_layout(tmp_path):
    data = {"dataset": "rsicd", "images": [
        {"filename": "airport_17.jpg", "imgid": 17, "split": "train",
         "sentences": [{"raw": AIRPORT_17, "tokens": AIRPORT_17.split(), "imgid": 17, "sentid": i} for i in range(5)]},
        {"filename": "square_102.jpg", "imgid": 102, "split": "test",
         "sentences": [{"raw": SQUARE_102 + " ", "imgid": 102, "sentid": 9}]},
    ]}
    path = tmp_path / "dataset_rsicd.json"
    path.write_text(json.dumps(data))
    fmt, recs = read_caption_json(path)
    assert fmt == "rsicd"
    assert [(r.image, r.split, r.image_id, len(r.captions)) for r in recs] == [
        ("airport_17.jpg", "train", "17", 5), ("square_102.jpg", "test", "102", 1)]
    assert recs[1].captions[0].text == SQUARE_102  # surrounding whitespace stripped
    with pytest.raises(CaptionFormatError, match="not COCO"):
        read_coco_captions(path)


def test_precomp_length_mismatch_names_both_files(tmp_path, rs_data):
    bad = tmp_path / "ucm_precomp"
    bad.mkdir()
    shutil.copy(rs_data / "captions" / "ucm_precomp" / "test_filename.txt", bad)
    lines = (rs_data / "captions" / "ucm_precomp" / "test_caps.txt").read_text().splitlines()
    (bad / "test_caps.txt").write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(CaptionFormatError, match=r"test_caps.txt has 1047 lines but test_filename.txt has 1050"):
        read_precomp(bad, "test")


def test_precomp_one_name_per_image_layout(tmp_path):
    """AMFMN rsicd_precomp: train_filename.txt names each image once for its 5 caption lines."""
    folder = tmp_path / "rsicd_precomp"
    folder.mkdir()
    (folder / "train_caps.txt").write_text("\n".join([AIRPORT_17] * 5 + [SQUARE_102] * 5) + "\n")
    (folder / "train_filename.txt").write_text("airport_17.jpg\nsquare_102.jpg\n")
    recs = read_precomp(folder, "train")
    assert [(r.image, [c.text for c in r.captions]) for r in recs] == [
        ("airport_17.jpg", [AIRPORT_17] * 5), ("square_102.jpg", [SQUARE_102] * 5)]
    # a one-per-caption file cut short repeats names: never read as the per-image layout
    (folder / "train_filename.txt").write_text("airport_17.jpg\n" * 5)
    with pytest.raises(CaptionFormatError, match="has 10 lines but train_filename.txt has 5"):
        read_precomp(folder, "train")


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "captions_val2017.json"
    path.write_text('{"images": [{"id": 1, "file_name": "a.jpg"}],\n "annotations": [{"image_id": 1, "caption": }]}')
    with pytest.raises(CaptionFormatError, match=r"malformed JSON at line 2 column 45: Expecting value"):
        read_caption_json(path)
    with pytest.raises(CaptionFormatError, match=r"neither COCO captions"):
        path.write_text('{"something": []}')
        read_caption_json(path)


def test_image_index_any_extension_any_case(tmp_path, rs_data):
    (tmp_path / "sub").mkdir()
    shutil.copy(rs_data / "images" / "rsicd" / "airport_17.jpg", tmp_path / "sub" / "AIRPORT_17.JPG")
    index = ImageIndex(tmp_path)
    assert index.find("airport_17.jpg") == tmp_path / "sub" / "AIRPORT_17.JPG"
    assert index.find("airport_17.tif") == tmp_path / "sub" / "AIRPORT_17.JPG"
    assert index.find("airport_18.jpg") is None


# -- the source -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def all_corpora_captions_only(rs_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("captions_only")
    caps = rs_data / "captions"
    inputs = [caps / "ucm_precomp", caps / "rsitmd_precomp", caps / "rsicd_coco" / "captions_val2017.json"]
    summary = run_ingest(CaptionsSource(make_options(CaptionsSource, captions_only=True)), inputs, out, progress=False)
    return out, summary


def test_source_captions_only_counts(all_corpora_captions_only):
    out, summary = all_corpora_captions_only
    assert summary["samples_written"] == 210 + 452 + 1092
    assert summary["counters"]["images_by_corpus"] == {"rsicd": 1092, "rsitmd": 452, "ucm": 210}
    assert summary["counters"]["captions_by_lang"] == {"en": 1050 + 2260 + 5460}
    assert summary["counters"]["formats"] == {"coco": 1, "precomp": 2}
    assert summary["skipped"] == []
    samples = {s["__key__"]: s for s in read_shards(out)}
    ucm = samples["ucm_test_91"]
    assert ucm["captions.json"] == [{"text": t, "lang": "en"} for t in UCM_91]
    assert ucm["json"]["corpus"] == "ucm" and ucm["json"]["image_name"] == "91.tif"
    assert ucm["json"]["license"] == "research use; no explicit license"
    rsicd = samples["rsicd_val_square_221"]
    assert rsicd["json"]["image_id"] == "8736" and rsicd["json"]["n_captions"] == 5


def test_source_reports_every_missing_image_by_name(tmp_path, rs_data):
    caps = rs_data / "captions"
    opts = make_options(CaptionsSource, images=rs_data / "images")
    summary = run_ingest(CaptionsSource(opts), [caps / "ucm_precomp"], tmp_path, progress=False)
    assert summary["samples_written"] == 0
    missing = [s for s in summary["skipped"] if s["kind"] == "missing_image"]
    assert len(missing) == 210
    assert missing[0]["path"].endswith("ucm_precomp::91.tif") and "'91.tif' not found" in missing[0]["reason"]
    assert summary["notes"]["missing_images"]["ucm"]["count"] == 210
    assert summary["notes"]["missing_images"]["ucm"]["names"][:2] == ["91.tif", "92.tif"]


def _rsicd_train_precomp(folder):
    folder.mkdir()
    (folder / "train_caps.txt").write_text("\n".join([AIRPORT_17] * 5 + [SQUARE_102] * 5 + ["a lone tree ."]) + "\n")
    (folder / "train_filename.txt").write_text("\n".join(["airport_17.tif"] * 5 + ["square_102.tif"] * 5
                                                         + ["tree_1.tif"]) + "\n")
    return folder


def test_source_resolves_real_images_and_keeps_jpeg_bytes(tmp_path, rs_data):
    precomp = _rsicd_train_precomp(tmp_path / "rsicd_precomp")
    images = tmp_path / "imgs"
    images.mkdir()
    shutil.copy(rs_data / "images" / "rsicd" / "airport_17.jpg", images / "airport_17.JPG")
    shutil.copy(rs_data / "images" / "rsicd" / "square_102.jpg", images)
    summary = run_ingest(CaptionsSource(make_options(CaptionsSource, images=images)), [precomp], tmp_path / "out",
                         progress=False)
    assert summary["samples_written"] == 2
    assert [(s["path"].rsplit("::", 1)[1], s["kind"]) for s in summary["skipped"]] == [("tree_1.tif", "missing_image")]
    samples = {s["__key__"]: s for s in read_shards(tmp_path / "out")}
    airport = samples["rsicd_train_airport_17"]
    assert airport["jpg"] == (rs_data / "images" / "rsicd" / "airport_17.jpg").read_bytes()
    assert airport["captions.json"] == [{"text": AIRPORT_17, "lang": "en"}] * 5
    assert (airport["json"]["width"], airport["json"]["height"]) == (384, 384)  # resized by the repo author
    assert samples["rsicd_train_square_102"]["captions.json"][0]["text"] == SQUARE_102


def test_source_skips_truncated_image(tmp_path, rs_data):
    precomp = _rsicd_train_precomp(tmp_path / "rsicd_precomp")
    images = tmp_path / "imgs"
    images.mkdir()
    data = (rs_data / "images" / "rsicd" / "airport_17.jpg").read_bytes()
    (images / "airport_17.jpg").write_bytes(data[: len(data) // 3])
    shutil.copy(rs_data / "images" / "rsicd" / "square_102.jpg", images)
    summary = run_ingest(CaptionsSource(make_options(CaptionsSource, images=images)), [precomp], tmp_path / "out",
                         progress=False)
    assert summary["samples_written"] == 1
    bad = [s for s in summary["skipped"] if s["kind"] == "image"]
    assert len(bad) == 1 and bad[0]["path"] == str(images / "airport_17.jpg")
    assert "cannot be decoded" in bad[0]["reason"]


def test_source_bad_inputs_skipped_rest_ingested(tmp_path, rs_data):
    caps = rs_data / "captions"
    mismatched = tmp_path / "sydney_precomp"
    mismatched.mkdir()
    (mismatched / "test_caps.txt").write_text("a b .\nc d .\ne f .\n")
    (mismatched / "test_filename.txt").write_text("1.tif\n1.tif\n")
    broken = tmp_path / "broken_coco.json"
    broken.write_text('{"images": [')
    opts = make_options(CaptionsSource, captions_only=True)
    summary = run_ingest(CaptionsSource(opts), [mismatched, broken, caps / "ucm_precomp", tmp_path / "nope"],
                         tmp_path / "out", progress=False)
    assert summary["samples_written"] == 210
    reasons = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert "test_caps.txt has 3 lines but test_filename.txt has 2" in reasons[str(mismatched)]
    assert "malformed JSON at line 1" in reasons[str(broken)]
    assert reasons[str(tmp_path / "nope")] == "no such file or folder"
    assert not list((tmp_path / "out").glob("*.partial"))


def test_source_merges_languages_into_one_sample(tmp_path, rs_data):
    de = tmp_path / "ucm_de_precomp"
    de.mkdir()
    (de / "test_caps.txt").write_text("Hier ist ein Stück Ackerland .\nEs ist ein Feld .\n")
    (de / "test_filename.txt").write_text("91.tif\n92.tif\n")
    opts = make_options(CaptionsSource, captions_only=True, lang="en,de", corpus="ucm,ucm")
    summary = run_ingest(CaptionsSource(opts), [rs_data / "captions" / "ucm_precomp", de], tmp_path / "out",
                         progress=False)
    assert summary["samples_written"] == 210
    assert summary["counters"]["captions_by_lang"] == {"de": 2, "en": 1050}
    samples = {s["__key__"]: s for s in read_shards(tmp_path / "out")}
    s91 = samples["ucm_test_91"]
    assert s91["captions.json"][-1] == {"text": "Hier ist ein Stück Ackerland .", "lang": "de"}
    assert s91["json"]["langs"] == ["de", "en"] and s91["json"]["n_captions"] == 6
    assert len(s91["json"]["sources"]) == 2


def test_source_needs_images_or_captions_only(rs_data, tmp_path):
    with pytest.raises(IngestError, match="--images DIR"):
        run_ingest(CaptionsSource(make_options(CaptionsSource)), [rs_data / "captions" / "ucm_precomp"], tmp_path,
                   progress=False)
    with pytest.raises(IngestError, match="one per input"):
        opts = make_options(CaptionsSource, captions_only=True, lang="en,de,fr")
        run_ingest(CaptionsSource(opts), [rs_data / "captions" / "ucm_precomp"], tmp_path, progress=False)


def test_rsicd_json_reader_rejects_entries_without_sentences(tmp_path):
    path = tmp_path / "dataset_rsicd.json"
    path.write_text(json.dumps({"images": [{"filename": "a.jpg", "sentences": [{"raw": "x"}]}, {"filename": "b.jpg"}]}))
    with pytest.raises(CaptionFormatError, match=r"images\[1\] lacks"):
        read_rsicd_json(path)


def test_source_tiff_pictures_become_png_and_16bit_tiffs_are_refused(tmp_path):
    import numpy as np
    from PIL import Image

    precomp = tmp_path / "ucm_precomp"
    precomp.mkdir()
    (precomp / "test_caps.txt").write_text("a green field .\na grey roof .\n")
    (precomp / "test_filename.txt").write_text("1.tif\n2.tif\n")
    images = tmp_path / "imgs"
    images.mkdir()
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(images / "1.tif")
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(images / "2.TIF")
    summary = run_ingest(CaptionsSource(make_options(CaptionsSource, images=images)), [precomp], tmp_path / "out",
                         progress=False)
    assert summary["samples_written"] == 1
    (bad,) = summary["skipped"]
    assert bad["path"] == str(images / "2.TIF") and "not an 8-bit picture" in bad["reason"]
    (sample,) = read_shards(tmp_path / "out")
    from io import BytesIO

    png = Image.open(BytesIO(sample["png"]))
    assert png.mode == "RGB" and png.getpixel((3, 3)) == (0, 200, 0)
