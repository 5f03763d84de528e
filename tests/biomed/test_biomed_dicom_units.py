"""DICOM work units: every series lands whole in one unit, so the shards do not depend on --unit-size or workers.

The series is a scale test on a real file: pydicom's CT_small.dcm copied with only InstanceNumber,
ImagePositionPatient and SOPInstanceUID changed (pydicom's corpus holds no multi-file series).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pydicom
import pytest

from clipzoo.biomed.sources import DicomSource
from clipzoo.core.ingest import IngestReport, run_ingest


SLICES = 5


@pytest.fixture(scope="module")
def export(shared_data, tmp_path_factory) -> dict[str, object]:
    """A 5-slice CT series spread over two folders, an MR file, and a CT file without a SeriesInstanceUID."""
    dicom_dir = shared_data / "biomed" / "medical_images" / "dicom"
    root = tmp_path_factory.mktemp("units")
    first, second = root / "part1", root / "part2"
    first.mkdir()
    second.mkdir()
    ct = pydicom.dcmread(dicom_dir / "CT_small.dcm")
    x, y, _ = ct.ImagePositionPatient
    paths = []
    for i in range(SLICES):  # file names against the geometry: the order must come from the positions
        ct.ImagePositionPatient = [x, y, -100.0 + 5.0 * i]
        ct.InstanceNumber = i + 1
        ct.SOPInstanceUID = pydicom.uid.generate_uid()
        path = (first if i < 3 else second) / f"im{SLICES - i:02d}.dcm"
        ct.save_as(path)
        paths.append(path)
    (root / "mr.dcm").write_bytes((dicom_dir / "MR_small.dcm").read_bytes())
    del ct.SeriesInstanceUID
    ct.save_as(root / "no_series.dcm")
    uid = str(pydicom.dcmread(paths[0]).SeriesInstanceUID)
    return {"root": root, "folders": [first, second], "ct": paths, "uid": uid, "mr": root / "mr.dcm",
            "lone": root / "no_series.dcm"}


def _run(tmp_path: Path, name: str, inputs: list[Path], unit_size: int, workers: int = 1, **options):
    """Ingest; return the summary, ``{member name: bytes}`` over every shard, and the output folder."""
    out = tmp_path / name
    summary = run_ingest(DicomSource(DicomSource.default_options(**options)), inputs, out, progress=False,
                         unit_size=unit_size, workers=workers)
    members = {}
    for shard in json.loads((out / "manifest.json").read_text())["shards"]:
        with tarfile.open(out / shard["name"]) as tar:
            members.update((m.name, tar.extractfile(m).read()) for m in tar)
    return summary, members, out


def _metas(members: dict[str, bytes]) -> list[dict]:
    return [json.loads(data) for name, data in members.items() if name.endswith(".json") and "captions" not in name]


def test_a_series_given_as_separate_files_lands_whole_in_one_unit(export, tmp_path):
    ct = export["ct"]
    # the CT slices interleaved with the other files, one input each: grouping them unit_size at a time splits it
    inputs = [ct[0], export["mr"], ct[3], ct[1], export["lone"], ct[4], ct[2]]
    _, reference, out = _run(tmp_path, "one-unit", inputs, unit_size=64)
    for name, unit_size, workers in (("by-two", 2, 1), ("by-two-2w", 2, 2), ("by-one", 1, 1)):
        summary, content, _ = _run(tmp_path, name, inputs, unit_size=unit_size, workers=workers)
        assert content == reference, name  # keys, metadata, captions and image bytes alike
    assert len(_metas(reference)) == SLICES + 2
    assert summary["units"] == 3  # the CT series whole, MR alone, the file without a series alone
    assert summary["counters"]["dicom"] == {"series": 3}  # one per unit here: a count adds up across units
    slices = sorted((meta["series_index"], meta["series_length"], meta["source"]) for meta in _metas(reference)
                    if meta["modality"] == "CT" and "series_id" in meta)
    assert slices == [(i, SLICES, f"im{SLICES - i:02d}.dcm") for i in range(SLICES)]
    lone = [meta for meta in _metas(reference) if meta["source"] == "no_series.dcm"]
    assert [(m["series_index"], m["series_length"]) for m in lone] == [(0, 1)]
    plan = (out / "_units" / "plan.json").read_text()
    assert export["uid"] not in plan and str(export["root"]) not in plan and "im01" not in plan


def test_a_series_spread_over_two_folders_lands_whole_in_one_unit(export, tmp_path):
    inputs = [*export["folders"], export["mr"]]
    _, reference, _ = _run(tmp_path, "one-unit", inputs, unit_size=64)
    summary, content, _ = _run(tmp_path, "by-one", inputs, unit_size=1)
    assert content == reference and summary["units"] == 2
    # named relative to the folder the user gave, as when the folder was read as one unit
    assert sorted(meta["source"] for meta in _metas(reference)) == [
        "im01.dcm", "im02.dcm", "im03.dcm", "im04.dcm", "im05.dcm", "mr.dcm"]
    _, middle, _ = _run(tmp_path, "middle", inputs, unit_size=1, slices="middle")
    assert sorted(meta["source"] for meta in _metas(middle)) == ["im03.dcm", "mr.dcm"]


def test_units_pack_whole_series_up_to_the_unit_size(export, tmp_path):
    ct, mr, lone = export["ct"], export["mr"], export["lone"]
    source = DicomSource()
    report = IngestReport()
    units = source.units([mr, *ct, lone, tmp_path / "missing.dcm"], 2, report)
    # in order of first appearance; a series larger than the unit size is one unit of its own
    assert units == [[mr], list(ct), [lone]]
    assert [s["reason"] for s in report.skipped] == ["no such file or folder"]
    assert source.units([mr, lone, *ct], 2, IngestReport()) == [[mr, lone], list(ct)]


@pytest.mark.parametrize("mode", ["relative", "hashed"])
def test_a_file_without_a_series_keys_the_same_wherever_its_folder_lives(mode, export, tmp_path):
    """Its key hashes the name the source gives it (below the named folder), not its absolute path: moving the
    export folder changes nothing in the shards, and the key is no hash of a guessable absolute path."""
    contents = []
    for i, where in enumerate((tmp_path / "site-a" / "export", tmp_path / "moved" / "DOE^JANE" / "export")):
        (where / "series").mkdir(parents=True)
        (where / "series" / "lone.dcm").write_bytes(export["lone"].read_bytes())
        (where / "mr.dcm").write_bytes(export["mr"].read_bytes())
        _, members, _ = _run(tmp_path, f"out{i}", [where], unit_size=1, source_paths=mode)
        contents.append(members)
    assert contents[0] == contents[1]  # keys, metadata and image bytes alike
    metas = _metas(contents[0])
    assert len(metas) == 2 and sum("series_id" not in m for m in metas) == 1


def test_files_without_a_series_of_one_name_under_two_inputs_keep_distinct_keys(export, tmp_path):
    """Two files named alike relative to their named inputs (``a/lone.dcm``, ``b/lone.dcm``, each named as a
    file) are still two series of their own, with the same keys for any unit size and worker count."""
    files = []
    for part in ("a", "b"):
        (tmp_path / part).mkdir()
        files.append(tmp_path / part / "lone.dcm")
        files[-1].write_bytes(export["lone"].read_bytes())
    _, reference, _ = _run(tmp_path, "one-unit", files, unit_size=64)
    _, content, _ = _run(tmp_path, "by-one-2w", files, unit_size=1, workers=2)
    assert content == reference
    metas = _metas(reference)
    assert [(m["series_index"], m["series_length"], m["source"]) for m in metas] == [(0, 1, "lone.dcm")] * 2
    assert len({name.split(".")[0] for name in reference}) == 2
