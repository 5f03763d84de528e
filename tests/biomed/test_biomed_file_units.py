"""NIfTI and plain-image ingests split into file-level work units (issue 10), with the output of one unit.

A named folder used to be one work unit, so ``--workers N`` read it on one core. Each file is a unit now, and
what used to hold only because one unit saw every file is planned over all files instead: source names keep
the path below the folder the user named, two files of one name get distinct keys, and the class list and
``cls`` indices of folder-labelled images are the same whichever unit a file lands in. The inputs are real
files (nibabel's wheel test volumes, the shared fundus/pathology images) arranged in BIDS-like and class folders.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from nibabel.testing import data_path as nibabel_data

from clipzoo.biomed.sources import ImagesSource, NiftiSource
from clipzoo.core.ingest import IngestReport, run_ingest
from clipzoo.core.ingest_engine import plan_units


@pytest.fixture(scope="module")
def volumes(shared_data, tmp_path_factory) -> Path:
    """Two subjects whose T1 volumes share a file name, and a functional run: three small real NIfTI files."""
    root = tmp_path_factory.mktemp("bids")
    layout = {"sub-01/anat/T1w.nii": shared_data / "biomed" / "medical_images" / "nifti" / "anatomical.nii",
              "sub-02/anat/T1w.nii": Path(nibabel_data) / "resampled_anat_moved.nii",
              "sub-02/func/bold.nii": Path(nibabel_data) / "functional.nii"}
    for rel, src in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    return root


@pytest.fixture(scope="module")
def class_folders(shared_data, tmp_path_factory) -> Path:
    """Images labelled by their folder: a fundus image, and one pathology image under two sites' folders."""
    images = shared_data / "biomed" / "medical_images"
    root = tmp_path_factory.mktemp("classes")
    layout = {"fundus/retina.jpg": images / "fundus" / "retina.jpg",
              "pathology/ihc.png": images / "pathology" / "ihc.png",
              "site-b/pathology/ihc.png": images / "pathology" / "ihc.png"}
    for rel, src in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    return root


NIFTI_OPTIONS = {"slices": "middle", "planes": "axial,coronal", "views": "mip"}


def _run(source, inputs: list[Path], out: Path, **engine) -> tuple[dict, dict[str, bytes], dict]:
    """Ingest; return the summary, ``{member name: bytes}`` over every shard, and the manifest."""
    summary = run_ingest(source, inputs, out, progress=False, **engine)
    manifest = json.loads((out / "manifest.json").read_text())
    members = {}
    for shard in manifest["shards"]:
        with tarfile.open(out / shard["name"]) as tar:
            members.update((m.name, tar.extractfile(m).read()) for m in tar)
    return summary, members, manifest


def _metas(members: dict[str, bytes]) -> dict[str, dict]:
    return {name.split(".", 1)[0]: json.loads(data) for name, data in members.items()
            if name.endswith(".json") and not name.endswith("captions.json")}


def test_a_folder_of_volumes_or_images_is_planned_as_one_unit_per_file(volumes, class_folders):
    nifti = NiftiSource(NiftiSource.default_options(**NIFTI_OPTIONS))
    assert [len(u) for u in plan_units(nifti, [volumes], None, IngestReport())] == [1, 1, 1]
    assert [len(u) for u in plan_units(nifti, [volumes], 2, IngestReport())] == [2, 1]
    images = ImagesSource(ImagesSource.default_options())
    assert [len(u) for u in plan_units(images, [class_folders], None, IngestReport())] == [1, 1, 1]


def _nifti_run(volumes: Path, out: Path, **engine) -> tuple[dict, dict[str, bytes], dict]:
    return _run(NiftiSource(NiftiSource.default_options(**NIFTI_OPTIONS)), [volumes], out, **engine)


def _same_output(runs: dict[str, tuple[dict, dict[str, bytes], dict]], reference: str) -> None:
    _, members, manifest = runs[reference]
    for name, (_, other_members, other) in runs.items():
        assert other_members == members, name  # keys, metadata, captions and image bytes alike
        assert other["ingest"]["notes"] == manifest["ingest"]["notes"], name


def test_nifti_output_is_the_same_for_any_unit_size_and_after_a_resume(volumes, tmp_path, lose_unit):
    runs = {name: _nifti_run(volumes, tmp_path / name, **engine)
            for name, engine in (("default", {}), ("whole", {"unit_size": 64}), ("by-two", {"unit_size": 2}))}
    # what a run killed after its first and last unit leaves: no manifest, the middle unit's record and shards gone
    out = tmp_path / "default"
    lose_unit(out, 1)
    runs["resumed"] = _nifti_run(volumes, out, resume=True)
    summary, reference, _ = runs["resumed"]
    assert summary["units"] == 3
    _same_output(runs, "whole")
    metas = _metas(reference)
    sources = sorted({m["source"] for m in metas.values()})
    assert sources == ["sub-01/anat/T1w.nii", "sub-02/anat/T1w.nii", "sub-02/func/bold.nii"]
    # four views (middle slice and mip in two planes) of each of three volumes, every key distinct: the second
    # T1w.nii's stem carries a hash of its relative name
    assert len(metas) == 12
    stems = {key.split("_", 1)[0] for key in metas}
    assert len(stems) == 3 and "T1w" in stems and "bold" in stems
    second = {key.split("_", 1)[0] for key, m in metas.items() if m["source"] == "sub-02/anat/T1w.nii"}
    assert len(second) == 1 and next(iter(second)).startswith("T1w-")


@pytest.mark.slow  # ~14 s: the worker pool's forkserver imports MONAI and torch once
def test_nifti_output_is_the_same_for_one_or_two_workers(volumes, tmp_path):
    runs = {name: _nifti_run(volumes, tmp_path / name, **engine)
            for name, engine in (("one", {"workers": 1}), ("two", {"workers": 2}),
                                 ("two-by-two", {"workers": 2, "unit_size": 2}))}
    assert runs["two"][0]["units"] == 3 and runs["two-by-two"][0]["units"] == 2
    _same_output(runs, "one")


def test_nifti_without_planning_names_and_keys_its_files_as_a_planned_run(volumes):
    """Library use (``samples`` on a folder, no engine): the same names and keys as the planned units give."""
    planned = NiftiSource(NiftiSource.default_options(**NIFTI_OPTIONS))
    units = planned.units([volumes], 1, IngestReport())
    planned_keys = [s["__key__"] for unit in units for s in planned.samples(unit, IngestReport())]
    direct = NiftiSource(NiftiSource.default_options(**NIFTI_OPTIONS))
    samples = list(direct.samples([volumes], IngestReport()))
    assert [s["__key__"] for s in samples] == planned_keys
    assert {s["json"]["source"] for s in samples} == {"sub-01/anat/T1w.nii", "sub-02/anat/T1w.nii",
                                                     "sub-02/func/bold.nii"}


def test_hashed_names_stay_distinct_and_carry_no_folder_names(volumes, tmp_path):
    source = NiftiSource(NiftiSource.default_options(**NIFTI_OPTIONS, source_paths="hashed"))
    _, members, manifest = _run(source, [volumes], tmp_path / "hashed", unit_size=1)
    metas = _metas(members)
    assert len({m["source"] for m in metas.values()}) == 3
    assert all(m["source"].startswith("sha256:") for m in metas.values())
    text = json.dumps(manifest) + "".join(members)
    assert "sub-0" not in text and "T1w" not in text


def test_images_classes_and_cls_do_not_depend_on_the_unit_a_file_lands_in(class_folders, tmp_path):
    runs = {}
    for name, engine in (("default", {}), ("whole", {"unit_size": 64}), ("two-workers", {"workers": 2})):
        runs[name] = _run(ImagesSource(ImagesSource.default_options(max_side=128)), [class_folders],
                          tmp_path / name, **engine)
    summary, reference, manifest = runs["default"]
    assert summary["units"] == 3
    _same_output(runs, "default")
    assert manifest["ingest"]["notes"]["classes"] == ["fundus", "pathology"]
    metas = _metas(reference)
    by_source = {m["source"]: (key, m) for key, m in metas.items()}
    assert sorted(by_source) == ["fundus/retina.jpg", "pathology/ihc.png", "site-b/pathology/ihc.png"]
    cls = {src: reference[f"{key}.cls"].decode() for src, (key, _) in by_source.items()}
    assert cls == {"fundus/retina.jpg": "0", "pathology/ihc.png": "1", "site-b/pathology/ihc.png": "1"}
    assert by_source["site-b/pathology/ihc.png"][1]["labels"] == ["pathology"]
    assert by_source["pathology/ihc.png"][0] != by_source["site-b/pathology/ihc.png"][0]


def test_images_classes_fixed_by_option_and_labels_relative_to_each_named_folder(class_folders, tmp_path):
    """Two named folders: each file's label comes from the folder below ITS input; --classes fixes the order."""
    source = ImagesSource(ImagesSource.default_options(max_side=128, classes="pathology,fundus"))
    inputs = [class_folders / "site-b", class_folders / "pathology", class_folders / "fundus"]
    _, members, manifest = _run(source, inputs, tmp_path / "roots", unit_size=1)
    assert manifest["ingest"]["notes"]["classes"] == ["pathology", "fundus"]
    metas = _metas(members)
    labels = sorted((m["source"], tuple(m["labels"]), m.get("class_index")) for m in metas.values())
    # site-b/pathology/ihc.png is labelled by 'pathology' below site-b; files named directly in a named class
    # folder have no folder below their input, as when the folders were read as one unit
    assert labels == [("ihc.png", (), None), ("pathology/ihc.png", ("pathology",), 0), ("retina.jpg", (), None)]
    assert len(metas) == 3
