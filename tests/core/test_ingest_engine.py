"""The ingest engine (issue 10, write side; issue 16's "one bad input never stops a run").

Each test first reproduces a defect found by using ingest as a careless user would: a re-run into a used
folder, a smaller shard size, two runs into one folder, kill -9 at various points, an input that raises.
Runs that must be killed or must hold the lock run in a subprocess, held at a chosen point by a gate
(:mod:`engine_helpers`), so every kill point is fixed by counts, not by timing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from engine_helpers import GatedSource, PreloadProbe, RaisingSource

from clipzoo.core.cli import main
from clipzoo.core.data.writer import Manifest, ShardWriter
from clipzoo.core.ingest import IngestError, run_ingest
from clipzoo.core.sources import ImagesSource, SyntheticSource

HELPERS = str(Path(__file__).parent)
POLL_S, POLLS = 0.05, 2400  # at most 2 minutes waiting for a gate; reached in well under a second normally

RUNNER = """
import pickle, sys
sys.path.insert(0, sys.argv[2])
from clipzoo.core.ingest import run_ingest
job = pickle.load(open(sys.argv[1], "rb"))
run_ingest(job["source"], job["inputs"], job["out"], progress=False, **job["kwargs"])
"""


# -- helpers --------------------------------------------------------------------------------------
def _images(shared: Path, folder: Path) -> list[Path]:
    """Four real images (fundus, pathology, two RSICD scenes) with sidecar captions, one file per unit."""
    folder.mkdir(parents=True, exist_ok=True)
    picks = [shared / "biomed/medical_images/fundus/retina.jpg", shared / "biomed/medical_images/pathology/ihc.png",
             shared / "remote_sensing/images/rsicd/airport_17.jpg", shared / "remote_sensing/images/rsicd/square_102.jpg"]
    out = []
    for i, src in enumerate(picks):
        dst = folder / f"img{i}{src.suffix}"
        dst.write_bytes(src.read_bytes())
        dst.with_suffix(".txt").write_text(f"caption of {src.stem}")
        out.append(dst)
    return out


def _images_source() -> ImagesSource:
    return ImagesSource(ImagesSource.default_options(max_side=48))


def _fingerprint(out: Path) -> list[tuple[str, int, str]]:
    """(name, samples, sha256) of every shard the manifest lists, checked against the bytes on disk."""
    m = Manifest.load(out)
    for s in m.shards:
        data = (out / s.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s.sha256 and len(data) == s.bytes, s.name
    return [(s.name, s.samples, s.sha256) for s in m.shards]


def _tars(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*.tar"))


def _start(tmp: Path, source, inputs, out: Path, **kwargs) -> subprocess.Popen:
    job = tmp / f"job-{time.monotonic_ns()}.pkl"
    job.write_bytes(pickle.dumps({"source": source, "inputs": list(inputs), "out": out, "kwargs": kwargs}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(job), HELPERS], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    for _ in range(POLLS):
        if path.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before its gate: {proc.stdout.read()!r}")
        time.sleep(POLL_S)
    proc.kill()
    raise AssertionError("the gated run never reached its gate")


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


# -- a used --out ---------------------------------------------------------------------------------
def test_rerun_into_used_folder_is_refused_and_overwrite_leaves_no_old_shards(tmp_path, capsys):
    out = tmp_path / "set"
    base = ["ingest", "core", "synthetic", "--count", "40", "--image-size", "16", "--out", str(out)]
    assert main([*base, "--shard-size", "10"]) == 0
    assert len(_tars(out)) == 4
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    # smaller shards without a flag: refused with one line, exit 2, the folder untouched
    assert main([*base, "--shard-size", "5"]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # --overwrite: the old shards are gone, the folder holds exactly what the manifest lists
    assert main([*base, "--shard-size", "5", "--overwrite"]) == 0
    assert _tars(out) == sorted(name for name, _, _ in _fingerprint(out)) and len(_tars(out)) == 8
    assert Manifest.load(out).num_samples == 40 and Manifest.load(out).layout == "community-v1"


def test_refused_run_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["ingest", "core", "images", "--out", str(out)]) == 2  # no inputs: the source refuses
    assert "at least one image" in capsys.readouterr().err and not out.exists()


def test_overwrite_and_resume_exclude_each_other(tmp_path):
    with pytest.raises(IngestError, match="exclude each other"):
        run_ingest(SyntheticSource(SyntheticSource.default_options(count=4)), [], tmp_path / "o", overwrite=True,
                   resume=True, progress=False)


# -- kill -9 --------------------------------------------------------------------------------------
def test_kill_during_overwrite_leaves_no_manifest_and_resume_completes(shared_data, tmp_path):
    inputs = _images(shared_data, tmp_path / "imgs")
    kw = {"unit_size": 1, "max_count": 1}
    run_ingest(_images_source(), inputs, tmp_path / "ref", progress=False, **kw)
    reference = _fingerprint(tmp_path / "ref")
    out = tmp_path / "out"
    run_ingest(_images_source(), inputs[:2], out, progress=False, **kw)  # an older, different set in --out
    gated = GatedSource(_images_source(), "img2", tmp_path / "reached", tmp_path / "never")
    proc = _start(tmp_path, gated, inputs, out, overwrite=True, **kw)
    _wait_for(tmp_path / "reached", proc)
    _kill(proc)
    # killed with two of four units done: the old manifest went first, so nothing claims to be a shard set
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in (out / "_units").iterdir()) == ["plan.json", "u00000.json", "u00001.json"]
    with pytest.raises(IngestError, match="not empty"):
        run_ingest(_images_source(), inputs, out, progress=False, **kw)
    run_ingest(_images_source(), inputs, out, resume=True, progress=False, **kw)
    assert _fingerprint(out) == reference and _tars(out) == _tars(tmp_path / "ref")


def test_resume_refuses_other_inputs(shared_data, tmp_path):
    inputs = _images(shared_data, tmp_path / "imgs")
    gated = GatedSource(_images_source(), "img1", tmp_path / "reached", tmp_path / "never")
    proc = _start(tmp_path, gated, inputs, tmp_path / "out", unit_size=1)
    _wait_for(tmp_path / "reached", proc)
    _kill(proc)
    with pytest.raises(IngestError, match="units differ"):
        run_ingest(_images_source(), inputs[:3], tmp_path / "out", unit_size=1, resume=True, progress=False)


def _domain_case(name: str, shared: Path, tmp: Path):
    """(source, inputs, kill points as (gate, samples before the kill)) for one domain."""
    if name == "core-images":
        return _images_source(), _images(shared, tmp / "imgs"), [("img1", 0), ("img3", 1)]
    if name == "biomed-dicom":
        from clipzoo.biomed.sources import DicomSource

        files = sorted((shared / "biomed/medical_images/dicom").glob("*.dcm"))
        return DicomSource(DicomSource.default_options(max_side=64)), files, [(files[1].name, 0), (files[-1].name, 1)]
    if name == "rs-geotiff":
        from clipzoo.remote_sensing.sources import GeoTiffSource

        files = [shared / "remote_sensing/geotiff" / n for n in ("import-tiff-test2.tiff", "rgbn_suba.tif")]
        # --bands 1: the two rasters have different band counts, and a shard set holds one band layout
        source = GeoTiffSource(GeoTiffSource.default_options(chip_size=32, edge="pad", max_nodata=1.0, bands="1"))
        return source, files, [(files[1].name, 0), (files[1].name, 3)]
    if name == "astro-simulated":
        from clipzoo.astro.sources import SimulatedSource

        return (SimulatedSource(SimulatedSource.default_options(n_per_class=2, lc_length=32, sp_length=32)), [],
                [("*", 1), ("*", 5)])
    raise ValueError(name)


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["core-images", "biomed-dicom", "rs-geotiff", "astro-simulated"])
def test_sigkill_then_resume_gives_the_uninterrupted_set(domain, shared_data, tmp_path):
    source, inputs, points = _domain_case(domain, shared_data, tmp_path)
    kw = {"unit_size": 1, "max_count": 2}
    run_ingest(source, inputs, tmp_path / "ref", progress=False, **kw)
    reference = _fingerprint(tmp_path / "ref")
    keys = [k for r in sorted((tmp_path / "ref/_units").glob("u*.json")) for k in json.loads(r.read_text())["keys"]]
    assert len(reference) >= 2 and len(keys) == len(set(keys)) == Manifest.load(tmp_path / "ref").num_samples
    for i, (gate, after) in enumerate(points):
        out = tmp_path / f"out{i}"
        proc = _start(tmp_path, GatedSource(source, gate, tmp_path / f"reached{i}", tmp_path / "never", after),
                      inputs, out, **kw)
        _wait_for(tmp_path / f"reached{i}", proc)
        _kill(proc)
        assert not (out / "manifest.json").exists()
        run_ingest(source, inputs, out, resume=True, progress=False, **kw)
        assert _fingerprint(out) == reference and _tars(out) == _tars(tmp_path / "ref")
        assert not list(out.glob("*.partial"))


# -- the lock -------------------------------------------------------------------------------------
def test_second_ingest_fails_at_once_naming_the_holder(shared_data, tmp_path):
    inputs = _images(shared_data, tmp_path / "imgs")
    out = tmp_path / "out"
    first = _start(tmp_path, GatedSource(_images_source(), "*", tmp_path / "reached", tmp_path / "go"), inputs, out,
                   unit_size=2)
    _wait_for(tmp_path / "reached", first)
    with pytest.raises(IngestError, match=f"another ingest is writing there \\(pid {first.pid} on "):
        run_ingest(_images_source(), inputs, out, unit_size=2, progress=False)
    with pytest.raises(IngestError, match=f"pid {first.pid}"):  # --overwrite must not take it either
        run_ingest(_images_source(), inputs, out, unit_size=2, overwrite=True, progress=False)
    (tmp_path / "go").touch()
    assert first.wait(timeout=120) == 0, first.stdout.read()
    assert Manifest.load(out).num_samples == 4 and len(_fingerprint(out)) == 2
    assert not (out / ".ingest.lock.json").exists()


# -- one bad input never stops a run --------------------------------------------------------------
def _raising_case(name: str, shared: Path, tmp: Path):
    """(source, inputs, the input that will raise) for one domain."""
    if name == "core-images":
        inputs = _images(shared, tmp / "imgs")
        return _images_source(), inputs, inputs[1]
    if name == "biomed-dicom":
        from clipzoo.biomed.sources import DicomSource

        files = sorted((shared / "biomed/medical_images/dicom").glob("*.dcm"))
        return DicomSource(DicomSource.default_options(max_side=64)), files, files[0]
    if name == "rs-geotiff":
        from clipzoo.remote_sensing.sources import GeoTiffSource

        files = [shared / "remote_sensing/geotiff" / n for n in ("import-tiff-test2.tiff", "rgbn_suba.tif")]
        options = GeoTiffSource.default_options(chip_size=32, edge="pad", max_nodata=1.0, bands="1")  # one layout
        return GeoTiffSource(options), files, files[1]
    if name == "astro-lightcurves":
        from clipzoo.astro.sources import LightCurvesSource

        files = sorted((shared / "astro/lightcurves/kepler").glob("*.fits"))
        return LightCurvesSource(LightCurvesSource.default_options(lc_length=32)), files, files[0]
    raise ValueError(name)


@pytest.mark.parametrize("unit_size", [1, 64])
@pytest.mark.parametrize("domain", ["core-images", "biomed-dicom", "rs-geotiff", "astro-lightcurves"])
def test_an_input_that_raises_becomes_a_skip_and_the_run_goes_on(domain, unit_size, shared_data, tmp_path):
    source, inputs, bad = _raising_case(domain, shared_data, tmp_path)
    good = [i for i in inputs if i != bad]
    kw = {"unit_size": unit_size, "max_count": 2}
    run_ingest(source, good, tmp_path / "ref", progress=False, **kw)
    summary = run_ingest(RaisingSource(source, bad.name), inputs, tmp_path / "out", progress=False, **kw)
    errors = [s for s in summary["skipped"] if s["kind"] == "error"]
    assert errors == [{"path": str(bad), "reason": f"RuntimeError: boom in {bad.name}", "kind": "error"}]
    ref = Manifest.load(tmp_path / "ref")
    assert summary["samples_written"] == ref.num_samples > 0
    ref_keys = [k for r in sorted((tmp_path / "ref/_units").glob("u*.json")) for k in json.loads(r.read_text())["keys"]]
    out_keys = [k for r in sorted((tmp_path / "out/_units").glob("u*.json")) for k in json.loads(r.read_text())["keys"]]
    assert sorted(out_keys) == sorted(ref_keys)
    if unit_size == 64:  # one unit either way: the same shards, byte for byte, as a run without the bad input
        assert [(s.samples, s.sha256) for s in Manifest.load(tmp_path / "out").shards] == \
            [(s.samples, s.sha256) for s in ref.shards]
    assert not list((tmp_path / "out").glob("*.partial"))


def test_duplicate_keys_across_units_name_both_units(shared_data, tmp_path):
    a = _images(shared_data, tmp_path / "a" / "same")[:1]
    b = _images(shared_data, tmp_path / "b" / "same")[:1]  # same parent name and stem -> the same key
    with pytest.raises(IngestError, match=r"'same_img0' comes from unit 0 \(.*a/same/img0.jpg\) and unit 1"):
        run_ingest(_images_source(), a + b, tmp_path / "out", unit_size=1, progress=False)


# -- parallel -------------------------------------------------------------------------------------
def test_worker_count_does_not_change_the_bytes(shared_data, tmp_path):
    inputs = _images(shared_data, tmp_path / "imgs")
    for workers in (1, 2):
        run_ingest(_images_source(), inputs, tmp_path / f"w{workers}", workers=workers, unit_size=1, max_count=1,
                   progress=False)
    assert _fingerprint(tmp_path / "w1") == _fingerprint(tmp_path / "w2")
    assert len(_fingerprint(tmp_path / "w1")) == 4


def _many_images(shared: Path, folder: Path, n: int) -> list[Path]:
    """``n`` image files (copies of the four real ones, each with its caption) in one folder."""
    four = _images(shared, folder / "src")
    out = []
    for i in range(n):
        src = four[i % 4]
        dst = folder / f"p{i:03d}{src.suffix}"
        dst.write_bytes(src.read_bytes())
        dst.with_suffix(".txt").write_text(f"caption {i}")
        out.append(dst)
    for f in (folder / "src").iterdir():
        f.unlink()
    (folder / "src").rmdir()
    return out


def test_default_units_give_every_worker_work_and_the_bytes_do_not_depend_on_workers(shared_data, tmp_path):
    """Without --unit-size the inputs were one unit of 64 per 64 inputs: 48 files were one unit, so one worker
    read everything while the others idled. The size is now derived from the number of inputs alone (never
    the worker count): 48 files are 48 units, 100 files (a folder) 50 units of 2; 1 and 2 workers write the same
    shards byte for byte."""
    files = _many_images(shared_data, tmp_path / "imgs", 100)
    summary = run_ingest(_images_source(), files[:48], tmp_path / "s48", workers=1, progress=False)
    assert (summary["units"], summary["unit_size"]) == (48, 1)
    for workers in (1, 2):
        summary = run_ingest(_images_source(), [tmp_path / "imgs"], tmp_path / f"w{workers}", workers=workers,
                             progress=False)
        assert (summary["units"], summary["unit_size"], summary["samples_written"]) == (50, 2, 100)
    assert _fingerprint(tmp_path / "w1") == _fingerprint(tmp_path / "w2")
    plan = json.loads((tmp_path / "w2" / "_units" / "plan.json").read_text())
    assert plan["settings"]["unit_size"] is None and [len(u) for u in plan["units"]] == [2] * 50


class _Triples(SyntheticSource):
    """Units of whole triples, packed ``unit_size`` inputs at a time (as the DICOM source keeps a series whole)."""

    def units(self, inputs, unit_size, report):
        units: list[list] = []
        for i in range(0, len(inputs), 3):
            if not units or len(units[-1]) + len(inputs[i:i + 3]) > unit_size:
                units.append([])
            units[-1].extend(inputs[i:i + 3])
        return units


def test_derived_unit_size_keeps_a_sources_groups_whole():
    """With no --unit-size the engine asks the source for its finest units and packs them: a group the source
    keeps together is never split, and the units do not depend on anything but the inputs."""
    from clipzoo.core.ingest import IngestReport
    from clipzoo.core.ingest_engine import plan_units

    inputs = [f"in{i:03d}" for i in range(300)]  # 100 triples: derived size ceil(300 / 64) = 5 -> one triple each
    units = plan_units(_Triples(), inputs, None, IngestReport())
    assert [len(u) for u in units] == [3] * 100 and sum(units, []) == inputs
    inputs = [f"in{i:04d}" for i in range(3000)]  # size 47: 15 triples (45 inputs) per unit
    units = plan_units(_Triples(), inputs, None, IngestReport())
    assert {len(u) for u in units[:-1]} == {45} and sum(units, []) == inputs
    assert plan_units(_Triples(), inputs, 7, IngestReport()) == _Triples().units(inputs, 7, IngestReport())


def test_pool_workers_have_the_source_readers_loaded_before_their_first_unit(shared_data, tmp_path):
    """A source's worker_imports were preloaded only by the first forkserver of a process: a later source's
    readers were imported inside each worker's first unit. Another source's pool runs first here, so the
    forkserver exists already; every unit of the probe must still start with its module loaded."""
    inputs = _images(shared_data, tmp_path / "imgs")
    run_ingest(_images_source(), inputs, tmp_path / "first", workers=2, unit_size=1, progress=False)
    run_ingest(PreloadProbe(_images_source()), inputs, tmp_path / "probe", workers=2, unit_size=1, progress=False)
    seen = []
    for shard in sorted((tmp_path / "probe").glob("*.tar")):
        with tarfile.open(shard) as tar:
            seen += [json.load(tar.extractfile(m))["preloaded"] for m in tar.getmembers() if m.name.endswith(".json")]
    assert seen == [{"wave": True}] * 4


FORKSERVER_PROBE = """
import sys
from multiprocessing import forkserver
from pathlib import Path
from clipzoo.core.ingest import run_ingest
from clipzoo.core.sources import ImagesSource
source = ImagesSource(ImagesSource.default_options(max_side=48))
run_ingest(source, [Path(p) for p in sys.argv[2:]], sys.argv[1], workers=2, progress=False)
print(forkserver._forkserver._forkserver_pid is not None)
"""


@pytest.mark.parametrize("several", [False, True])
def test_a_forkserver_is_started_before_planning_only_for_inputs_that_may_need_it(several, shared_data, tmp_path):
    """One named file is one unit, read in the driver: starting the pool's forkserver for it only spent a core
    importing the readers (13 s for MONAI here) that nobody used. With two inputs (two units) the pool runs,
    which shows the probe does see a forkserver."""
    inputs = _images(shared_data, tmp_path / "imgs")[:2 if several else 1]
    done = subprocess.run([sys.executable, "-c", FORKSERVER_PROBE, str(tmp_path / "out"), *map(str, inputs)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(several)


def test_ray_engine_writes_the_process_pools_bytes(local_ray, shared_data, tmp_path):
    inputs = _images(shared_data, tmp_path / "imgs")
    kw = {"unit_size": 1, "max_count": 1, "progress": False}
    run_ingest(_images_source(), inputs, tmp_path / "pool", workers=2, **kw)
    summary = run_ingest(_images_source(), inputs, tmp_path / "ray", engine="ray", workers=2, **kw)
    assert _fingerprint(tmp_path / "ray") == _fingerprint(tmp_path / "pool") and summary["units"] == 4


# -- the writer -----------------------------------------------------------------------------------
def test_writing_shards_does_not_import_torch(tmp_path):
    code = ("import sys; from clipzoo.core.cli import main; "
            f"rc = main(['ingest', 'core', 'synthetic', '--count', '6', '--image-size', '16', '--out', {str(tmp_path / 'o')!r}]); "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'webdataset')); "
            "print('LOADED', loaded); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout
    assert Manifest.load(tmp_path / "o").num_samples == 6


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_writer_community_names_greyscale_and_encoding_options(tmp_path):
    import numpy as np
    from PIL import Image

    grey = Image.fromarray((np.arange(64 * 48) % 251).astype(np.uint8).reshape(48, 64), mode="L")
    deep = Image.fromarray((np.arange(32 * 32) * 61 % 65521).astype(np.uint16).reshape(32, 32))
    assert deep.mode == "I;16"
    rgb = Image.new("RGB", (20, 10), (200, 30, 10))
    samples = [{"__key__": "g", "image.png": grey, "txt": "grey", "json": {"n": np.int64(3)}},
               {"__key__": "d", "image": deep, "json": {}},
               {"__key__": "c", "image.jpg": rgb, "captions.json": ["a", "b"], "lightcurve.npy": np.ones(3), "cls": 2,
                "json": {}}]

    def write(folder: Path, **kw) -> dict[str, bytes]:
        with ShardWriter(folder, **kw) as w:
            for s in samples:
                w.write(dict(s))
        return _members(folder / "shard-000000.tar")

    as_given = write(tmp_path / "a")
    assert sorted(as_given) == sorted(["g.png", "g.txt", "g.json", "d.png", "d.json", "c.jpg", "c.captions.json",
                                       "c.lightcurve.npy", "c.cls", "c.json"])
    assert Image.open(io.BytesIO(as_given["g.png"])).mode == "L"  # greyscale is never widened to RGB
    back = Image.open(io.BytesIO(as_given["d.png"]))
    assert back.mode == "I;16" and np.array_equal(np.asarray(back), np.asarray(deep))
    assert json.loads(as_given["g.json"]) == {"n": 3} and as_given["c.cls"] == b"2"
    jpg = write(tmp_path / "j", image_format="jpg", jpeg_quality=80)
    assert "g.jpg" in jpg and "d.png" in jpg and "c.jpg" in jpg  # 16-bit cannot be JPEG, so it stays PNG
    assert Image.open(io.BytesIO(jpg["g.jpg"])).mode == "L"
    assert jpg["c.jpg"] != as_given["c.jpg"]  # quality 80, not the default 95
    # fixed headers: the same samples give the same bytes
    again = write(tmp_path / "a2")
    assert (tmp_path / "a" / "shard-000000.tar").read_bytes() == (tmp_path / "a2" / "shard-000000.tar").read_bytes()
    assert again == as_given
    with tarfile.open(tmp_path / "a" / "shard-000000.tar") as tar:
        assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in tar.getmembers()} == {(0, 0, 0, "", 0o644)}


# -- fsspec ---------------------------------------------------------------------------------------
def test_out_on_an_fsspec_filesystem(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    opts = SyntheticSource.default_options(count=30, image_size=16)
    run_ingest(SyntheticSource(opts), [], tmp_path / "local", max_count=10, progress=False)
    url = "memory://engine-test/set"
    summary = run_ingest(SyntheticSource(opts), [], url, max_count=10, progress=False)
    assert summary["samples_written"] == 30
    remote = Manifest.from_json(fs.cat(f"{url}/manifest.json").decode())
    assert [(s.name, s.sha256) for s in remote.shards] == [(n, h) for n, _, h in _fingerprint(tmp_path / "local")]
    for s in remote.shards:
        assert hashlib.sha256(fs.cat(f"{url}/{s.name}")).hexdigest() == s.sha256
    assert not fs.exists(f"{url}/.ingest.lock.json")
    # a lock object left by a killed run: refused with what to delete
    fs.pipe("memory://engine-test/other/.ingest.lock.json", b'{"pid": 7, "host": "h", "started": "t"}')
    with pytest.raises(IngestError, match=r"pid 7 on h.*delete memory://engine-test/other/.ingest.lock.json"):
        run_ingest(SyntheticSource(opts), [], "memory://engine-test/other", progress=False)
    fs.rm("memory://engine-test", recursive=True)


def test_inputs_from_an_fsspec_url_are_staged_locally(shared_data, tmp_path, monkeypatch):
    import fsspec

    monkeypatch.setenv("CLIPZOO_INPUT_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    local = _images(shared_data, tmp_path / "imgs")
    for path in [*local, *(p.with_suffix(".txt") for p in local)]:
        fs.pipe(f"memory://engine-in/imgs/{path.name}", path.read_bytes())
    kw = {"unit_size": 1, "max_count": 1, "progress": False}
    run_ingest(_images_source(), local, tmp_path / "local", **kw)
    # a folder URL: copied with its sidecar captions (a file URL alone would come without them)
    summary = run_ingest(_images_source(), ["memory://engine-in/imgs"], tmp_path / "remote", **kw)

    def keys(out):
        return [k for r in sorted((out / "_units").glob("u*.json")) for k in json.loads(r.read_text())["keys"]]

    assert summary["samples_written"] == 4 and keys(tmp_path / "remote") == keys(tmp_path / "local")
    assert (tmp_path / "cache/memory/engine-in/imgs/img0.txt").read_text() == "caption of retina"
    fs.rm("memory://engine-in", recursive=True)


def test_ray_missing_is_one_line_and_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(IngestError, match=r"--engine ray needs the ray package: pip install clipzoo-core\[ray\]"):
        run_ingest(SyntheticSource(SyntheticSource.default_options(count=4)), [], tmp_path / "o", engine="ray",
                   progress=False)
    assert not (tmp_path / "o").exists()


def test_cli_engine_and_encoding_flags(shared_data, tmp_path, capsys):
    _images(shared_data, tmp_path / "imgs")
    out = tmp_path / "out"
    argv = ["ingest", "core", "images", str(tmp_path / "imgs"), "--out", str(out), "--max-side", "48",
            "--unit-size", "3", "--workers", "1", "--image-format", "jpg", "--jpeg-quality", "70", "--shard-size", "2"]
    assert main(argv) == 0
    m = Manifest.load(out)
    assert m.ingest["units"] == 2 and [s.name for s in m.shards] == [
        "images-u00000-000000.tar", "images-u00000-000001.tar", "images-u00001-000000.tar"]
    assert sorted(n for n in _members(out / m.shards[-1].name) if n.endswith(".jpg")) == ["imgs_img3.jpg"]
    assert main([*argv, "--resume"]) == 0  # finished already: nothing to redo, the same shards
    assert [(s.name, s.sha256) for s in Manifest.load(out).shards] == [(s.name, s.sha256) for s in m.shards]
    assert "4 samples from 4 inputs; 0 skipped" in capsys.readouterr().out


class _HoldsALock(ImagesSource):
    """A source whose planning leaves an object that cannot be copied (a lock) on it."""

    def units(self, inputs, unit_size, report):
        import threading

        self.guard = threading.Lock()
        return super().units(inputs, unit_size, report)


def test_a_source_that_cannot_be_copied_stops_the_run_instead_of_losing_its_planned_state(shared_data, tmp_path):
    """Rebuilt from its options, a unit's source would lose what planning recorded (names, unique stems)."""
    files = _images(shared_data, tmp_path / "in")
    with pytest.raises(IngestError, match="images source cannot be copied for a work unit"):
        run_ingest(_HoldsALock(_HoldsALock.default_options(max_side=48)), files, tmp_path / "out", progress=False,
                   unit_size=1)


def test_probing_a_failed_unit_restores_the_callers_logging_switch(shared_data, tmp_path):
    import logging

    files = _images(shared_data, tmp_path / "in")
    logging.disable(logging.ERROR)
    try:
        summary = run_ingest(RaisingSource(_images_source(), files[1].name), files, tmp_path / "out",
                             progress=False, unit_size=64)
        assert [s["kind"] for s in summary["skipped"]] == ["error"]  # the probes ran, in this process
        assert logging.root.manager.disable == logging.ERROR
    finally:
        logging.disable(logging.NOTSET)


def test_units_reports_merge_counts_by_adding_and_notes_by_agreeing():
    """Counters add up across units; a note is a setting or a description, so a number in it is never summed
    (a chip size of 224 in 3 units is 224), and units that disagree give the list of their values."""
    from clipzoo.core.ingest import IngestReport

    merged = IngestReport()
    for series, setting in ((3, "a"), (2, "a"), (4, "b")):
        unit = IngestReport()
        unit.count("dicom", "series", series)
        unit.notes.update({"chip_size": 224, "mode": setting})
        merged.merge(unit.state())
    assert merged.counters["dicom"] == {"series": 9}
    assert merged.notes == {"chip_size": 224, "mode": ["a", "b"]}


def test_a_dropped_sample_group_takes_back_its_counts_and_skips_and_no_other():
    """What a unit counted and skipped inside a group's block goes when the merge drops that group (a repeat of an
    earlier unit's), through the done record's JSON; counts and skips outside it, or of other groups, stay."""
    from clipzoo.core.ingest import IngestReport

    unit = IngestReport()
    unit.count("license", "cc-by")  # outside any group
    unit.skip("a.xml#fig9", "no caption", kind="figure")
    for name, license_ in (("article A", "cc-by"), ("article B", "cc0"), ("article C", "cc-by")):
        with unit.grouped(name):
            unit.count("license", license_)
            unit.skip(f"{name}#fig1", "no caption", kind="figure")
            if name == "article B":
                unit.count("figures", "caption_only")
    with unit.grouped("article D", "d.xml"):  # read, nothing counted: still a group the unit read
        pass
    back = IngestReport.from_state(json.loads(json.dumps(unit.state())))
    assert back.groups["article D"] == {"counters": {}, "skips": [], "source": "d.xml"}
    back.drop_groups(["article B"])
    assert dict(back.counters["license"]) == {"cc-by": 3}
    assert "figures" not in back.counters and back.counters["skipped_by_kind"] == {"figure": 3}
    assert [s["path"] for s in back.skipped] == ["a.xml#fig9", "article A#fig1", "article C#fig1"]
    back.drop_groups(["article C", "article Z"])  # the indexes of the skips that stayed still point at theirs
    assert [s["path"] for s in back.skipped] == ["a.xml#fig9", "article A#fig1"]
    assert dict(back.counters["license"]) == {"cc-by": 2}
