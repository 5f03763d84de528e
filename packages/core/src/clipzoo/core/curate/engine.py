"""``run_curate``: shard sets in, a curated shard set and its report out, in two passes on the data engine.

1. **Signatures** (parallel, one work unit per input shard): each worker reads its shard and returns one
   small :class:`~clipzoo.core.curate.signatures.Signature` per sample (hashes, caption MinHash, matched
   metadata entries, filter features, CLIP score).
2. **Decisions** (driver): the steps run in recipe order over the signatures, each on the samples the
   steps before it kept. Memory is bounded by these indexes, never by the corpus: no pixel reaches the driver.
3. **Write** (parallel, one unit per input shard): each worker copies its shard's kept samples byte for byte
   (no re-encoding) into ``OUT/curated-uNNNNN-MMMMMM.tar`` and then writes its done record
   ``OUT/.units/uNNNNN.json``; the driver merges the records in unit order, writes the report (JSON,
   Markdown, PNG) and ``manifest.json`` last, atomically (the commit record), with a ``curation`` section
   naming every removal by key, step and reason.

Both passes run through the ingest engine's executor (:func:`clipzoo.core.ingest_engine.execute`: in
process, a process pool, or Ray tasks with ``engine="ray"``), and ``--out`` follows the engine's rules: it is
locked (:class:`~clipzoo.core.ingest_engine.OutLock`; a second run fails at once naming the holder), a
non-empty folder is refused unless ``overwrite`` (the old manifest is removed first, then the old shards) or
``resume``. ``resume`` runs pass 1 and the decisions again (signatures are not kept) and rewrites only the
units whose done record is missing, names other kept keys or another input shard, or whose shards are gone.

The output depends only on the inputs and the recipe, not on the worker count or the engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from clipzoo.core.curate.signatures import SignatureSpec, iter_shard, shard_signatures
from clipzoo.core.curate.steps import CurateError, Step, build_steps

log = logging.getLogger("clipzoo.curate")

UNITS_DIR = ".units"
PREFIX = "curated"
REPORT_FILES = ("report.json", "report.md", "report.png")


@dataclass(frozen=True)
class WorkUnit:
    """One input shard: which input set it belongs to, its path, and the global order of its first sample."""

    index: int
    set_index: int
    url: str
    samples: int
    order0: int
    bytes: int | None = None


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """The dotted name of the first setting where two preprocess notes differ ('' when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return ""
    return "" if a == b else path or "(the whole note)"


def _common_preprocess(notes: list[tuple[Path, Any]]) -> dict[str, Any] | None:
    """The preprocessing the input sets' sources recorded (``ingest.notes.preprocess``), which the curated set
    carries on so a model trained on it still gets its data's settings; refused when two inputs differ, because
    one set cannot say it was preprocessed two ways."""
    (first, note), rest = notes[0], notes[1:]
    for folder, other in rest:
        where = _first_difference(note, other)
        if where:
            raise CurateError(f"{folder}: its source preprocessed the data otherwise than {first} did "
                              f"(preprocess {where} differs); curate sets ingested with the same settings "
                              "(e.g. the same --model or --stats) together")
    return note


def plan_units(inputs: list[Path]) -> tuple[list[WorkUnit], list[dict[str, Any]], dict[str, Any] | None]:
    """Work units of the input shard sets (their manifests), in input order, their descriptions and their common
    preprocess note; refuses a folder without a manifest."""
    from clipzoo.core.data.writer import MANIFEST_NAME, Manifest

    units: list[WorkUnit] = []
    described = []
    notes: list[tuple[Path, Any]] = []
    order = 0
    for set_index, folder in enumerate(inputs):
        folder = Path(folder)
        if not (folder / MANIFEST_NAME).is_file():
            raise CurateError(f"{folder}: not a shard set (no {MANIFEST_NAME}); "
                              "give folders written by 'clipzoo ingest'")
        manifest = Manifest.load(folder)
        for shard, url in zip(manifest.shards, manifest.shard_paths(folder)):
            if not Path(url).is_file():
                raise CurateError(f"{url}: listed in {folder / MANIFEST_NAME} but missing; re-run the ingest")
            units.append(WorkUnit(len(units), set_index, url, shard.samples, order, shard.bytes))
            order += shard.samples
        described.append({"path": str(folder), "samples": manifest.num_samples, "shards": len(manifest.shards),
                          "source": {k: manifest.source.get(k) for k in ("domain", "name") if k in manifest.source}})
        notes.append((folder, ((manifest.ingest or {}).get("notes") or {}).get("preprocess")))
    return units, described, _common_preprocess(notes)


@dataclass(frozen=True)
class WriteTask:
    """Pass 2 of one input shard as sent to a worker: its kept samples (``{old key: new key}``) and where to."""

    unit: WorkUnit
    keep: dict[str, str]
    out: str
    max_count: int

    @property
    def digest(self) -> str:
        """What decides this unit's output (its input shard, kept keys, shard size): a resumed run reuses the
        unit's shards only when its done record carries the same digest. A hash, so no key or path is stored."""
        text = json.dumps([self.unit.url, self.unit.bytes, sorted(self.keep.items()), self.max_count])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _record_name(unit: int) -> str:
    return f"{UNITS_DIR}/u{unit:05d}.json"


def _signatures_unit(task: tuple[WorkUnit, SignatureSpec]) -> tuple[int, list]:
    """Pass 1 of one input shard: ``(unit index, its signatures)``."""
    unit, spec = task
    return unit.index, shard_signatures(unit.url, spec, unit.index, unit.set_index, unit.order0, unit.bytes)


def _write_unit(task: WriteTask) -> dict[str, Any]:
    """Pass 2 of one input shard: copy its kept samples into ``OUT/curated-uNNNNN-*.tar``, then write the done
    record (atomically, after the shards are complete); return the record."""
    from clipzoo.core.data.writer import ShardWriter, atomic_write_text

    unit = task.unit
    writer = ShardWriter(task.out, prefix=PREFIX, max_count=task.max_count, unit=unit.index, write_manifest=False)
    with writer:
        for sample in iter_shard(unit.url, unit.bytes):
            new_key = task.keep.get(sample["__key__"])
            if new_key is not None:
                writer.write({**sample, "__key__": new_key})
    record = {"unit": unit.index, "digest": task.digest, "shards": [asdict(s) for s in writer.manifest.shards]}
    atomic_write_text(Path(task.out) / _record_name(unit.index), json.dumps(record))
    return record


def _ours(name: str) -> bool:
    """What a curate run leaves in its --out (what --overwrite and --resume may remove)."""
    from clipzoo.core.data.writer import MANIFEST_NAME

    return (name in (MANIFEST_NAME, UNITS_DIR, *REPORT_FILES) or name.endswith((".tar", ".partial"))
            or ".tmp" in name)


def _done_records(out: Path, tasks: list[WriteTask]) -> dict[int, dict[str, Any]]:
    """Done records of a previous run that this run's pass 2 can keep (same digest, shards present at size)."""
    done = {}
    for task in tasks:
        path = out / _record_name(task.unit.index)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # records are written atomically: an unreadable one is not ours, redo the unit
        if record.get("digest") == task.digest and all(
                (out / s["name"]).is_file() and (out / s["name"]).stat().st_size == s["bytes"]
                for s in record.get("shards", [])):
            done[task.unit.index] = record
    return done


class _Bar:
    """A tqdm bar over one pass's units, fed by the executor's completion callback."""

    def __init__(self, total: int, desc: str, progress: bool, initial: int = 0):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="shard", disable=not progress)

    def __enter__(self):
        return self.bar

    def __exit__(self, *exc) -> None:
        self.bar.close()


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A curate recipe (YAML): ``steps`` (list of ``name: {options}``) and optional ``workers``/``shard_size``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CurateError(f"--recipe {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CurateError(f"--recipe {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or "steps" not in data:
        raise CurateError(f"--recipe {path}: needs a 'steps' list, e.g. steps: [{{dedup: {{}}}}]")
    return data


def run_curate(inputs: Iterable[str | Path], out: str | Path, steps: list[Any], *, workers: int = 1,
               engine: str = "process", ray_address: str | None = None, shard_size: int = 10_000,
               overwrite: bool = False, resume: bool = False, progress: bool = True,
               tracking_uri: str | None = None) -> dict[str, Any]:
    """Curate ``inputs`` (shard folders) into ``out`` with ``steps`` (a recipe's list); return the report dict.

    ``workers`` processes (or Ray tasks at a time with ``engine="ray"``; ``ray_address`` joins a cluster,
    default a local instance) run both passes; ``overwrite`` replaces what is in a non-empty ``out``,
    ``resume`` finishes an interrupted curate there (see the module docstring).
    """
    from clipzoo.core.ingest_engine import ENGINES

    t0 = time.time()
    inputs = [Path(p) for p in inputs]
    if "://" in str(out):
        raise CurateError(f"--out {out}: curate writes to a local folder (or one every Ray worker mounts), "
                          "not a URL; upload the curated set afterwards")
    out = Path(out)
    if not inputs:
        raise CurateError("give at least one input shard folder")
    if out.resolve() in {p.resolve() for p in inputs}:
        raise CurateError(f"--out {out} is one of the inputs; write the curated set to a new folder")
    if shard_size < 1 or workers < 1:
        raise CurateError("--shard-size and --workers must be >= 1")
    if engine not in ENGINES:
        raise CurateError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if overwrite and resume:
        raise CurateError("--overwrite and --resume exclude each other: replace the curated set, or finish it")
    if out.exists() and not out.is_dir():
        raise CurateError(f"--out {out}: exists and is not a folder")
    step_objs: list[Step] = build_steps(steps)
    units, described, preprocess = plan_units(inputs)
    spec = SignatureSpec(phash=False, tracking_uri=tracking_uri)
    for step in step_objs:
        step.prepare(spec)
    for step in step_objs:  # benchmark data is read before anything is written, so a bad reference stops early
        if hasattr(step, "load_reference"):
            step.load_reference()
    run = _Run(units, described, step_objs, steps, spec, out, workers, engine, ray_address, shard_size, progress, t0,
               preprocess)
    return _locked(run, overwrite, resume)


@dataclass
class _Run:
    """One curate run's settings, as the driver's functions share them."""

    units: list[WorkUnit]
    described: list[dict[str, Any]]
    step_objs: list[Step]
    steps: list[Any]
    spec: SignatureSpec
    out: Path
    workers: int
    engine: str
    ray_address: str | None
    shard_size: int
    progress: bool
    t0: float
    preprocess: dict[str, Any] | None = None  # the inputs' common ingest.notes.preprocess, carried on

    def execute(self, fn, tasks: list, on_done) -> None:
        """``fn`` over ``tasks`` on the data engine's executor (in process for one task or worker)."""
        from clipzoo.core.ingest import IngestError
        from clipzoo.core.ingest_engine import execute

        used = 1 if self.engine == "process" and len(tasks) <= 1 else min(self.workers, max(len(tasks), 1))
        try:
            execute(fn, tasks, on_done, workers=used, engine=self.engine, ray_address=self.ray_address,
                    preload=("clipzoo.core.curate.signatures", "PIL.Image"))
        except IngestError as exc:  # the executor's own errors (ray missing, a worker killed): one line
            raise CurateError(str(exc)) from None


def _locked(run: _Run, overwrite: bool, resume: bool) -> dict[str, Any]:
    """Lock ``--out``, apply the engine's rules for a non-empty one, and run the passes; on a run that refused
    to start (or failed before writing a unit), leave the folder as it was."""
    import gc

    from clipzoo.core.data.writer import MANIFEST_NAME
    from clipzoo.core.ingest import IngestError
    from clipzoo.core.ingest_engine import LOCK_INFO, LOCK_NAME, OutLock
    from clipzoo.core.io import Storage

    out = run.out
    existed = out.exists()
    lock_existed = existed and (out / LOCK_NAME).exists()
    out.mkdir(parents=True, exist_ok=True)
    storage = Storage(out)
    lock = OutLock(storage, command="curate")
    started = refused = False
    try:
        try:
            lock.acquire()  # first: "another ingest/curate is writing there (pid ...)" says more than "not empty"
        except IngestError as exc:
            raise CurateError(str(exc)) from None
        contents = [n for n in storage.list() if n not in (LOCK_NAME, LOCK_INFO)]
        refused = True  # until the checks below pass
        if contents and not (overwrite or resume):
            raise CurateError(f"--out {out} is not empty ({len(contents)} entries); add --overwrite to replace what "
                              "is there, --resume to finish an interrupted curate, or choose a new folder")
        if resume and contents:
            if (out / MANIFEST_NAME).is_file():
                raise CurateError(f"--resume: {out} is a finished shard set ({MANIFEST_NAME}); nothing to finish. "
                                  "Use --overwrite to curate into it again")
            if not (out / UNITS_DIR).is_dir():
                raise CurateError(f"--resume: {out} holds no record of an interrupted curate ({UNITS_DIR}/); "
                                  "use --overwrite to write it anew")
        if overwrite and contents:
            storage.remove(MANIFEST_NAME)  # first: from here on the folder is not a shard set any more
            for name in contents:
                if _ours(name):
                    storage.remove(name)
        refused, started = False, True
        try:
            return _passes(run, resume)
        finally:
            gc.unfreeze()
    except CurateError:
        if started and not any(n.endswith(".json") for n in storage.list(UNITS_DIR)):
            for name in storage.list():  # no unit was finished: remove what this run wrote, as if never started
                if name not in (LOCK_NAME, LOCK_INFO) and _ours(name):
                    storage.remove(name)
        raise
    finally:
        lock.release()
        if not lock_existed and (refused or not [n for n in storage.list() if n not in (LOCK_NAME, LOCK_INFO)]):
            storage.remove(LOCK_NAME)  # nothing was written: leave no lock file behind either
            if not existed:
                os.rmdir(out)


def _passes(run: _Run, resume: bool) -> dict[str, Any]:
    """Pass 1 (signatures) on the executor, then the decisions and pass 2 (:func:`_decide_and_write`)."""
    import gc

    results: dict[int, list] = {}
    with _Bar(len(run.units), "curate: signatures", run.progress) as bar:
        def on_signatures(result: tuple[int, list]) -> None:
            # The driver holds a few objects per sample for the whole run: moving each result into the garbage
            # collector's permanent generation keeps full collections from rescanning them (the decision pass
            # would otherwise grow faster than the corpus).
            results[result[0]] = result[1]
            gc.freeze()
            bar.update(1)

        run.execute(_signatures_unit, [(u, run.spec) for u in run.units], on_signatures)
    return _decide_and_write(run, [results[u.index] for u in run.units], resume)


def _decide_and_write(run: _Run, per_unit: list, resume: bool) -> dict[str, Any]:
    """The driver's decisions over the signatures, then pass 2 (see the module docstring)."""
    from clipzoo.core.curate.report import write_report
    from clipzoo.core.data.writer import MANIFEST_NAME, Manifest, ShardInfo, atomic_write_text

    units, described, step_objs, steps, out = run.units, run.described, run.step_objs, run.steps, run.out

    sigs = [s for unit_sigs in per_unit for s in unit_sigs]
    n = len(sigs)
    alive = np.ones(n, dtype=bool)
    removals: list[dict[str, Any]] = []
    funnel = [{"step": "input", "samples": n}]
    step_reports = []
    for step in step_objs:
        t = time.time()
        before = int(alive.sum())
        result = step.run(sigs, alive)
        for g in sorted(result.removed):
            alive[g] = False
            removals.append({"key": sigs[g].key, "set": sigs[g].set_index, "step": step.name,
                             "reason": result.removed[g]})
        funnel.append({"step": step.name, "samples": int(alive.sum())})
        step_reports.append({**step.describe(), "in": before, "removed": len(result.removed),
                             "out": int(alive.sum()), "seconds": round(time.time() - t, 3), **result.details})
        log.info("curate %s: %d -> %d samples", step.name, before, int(alive.sum()))

    # keys stay as they were; a key kept from two input sets gets the later set's index appended
    seen: set[str] = set()
    keep_by_unit: list[dict[str, str]] = [{} for _ in units]
    renamed = 0
    for g in np.flatnonzero(alive):
        s = sigs[g]
        key = s.key if s.key not in seen else f"{s.key}_set{s.set_index}"
        renamed += key != s.key
        seen.add(key)
        keep_by_unit[s.unit][s.key] = key

    # pass 2: copy the kept samples, one unit per input shard (resume: only units without a matching done record)
    tasks = [WriteTask(u, keep_by_unit[u.index], str(out), run.shard_size) for u in units if keep_by_unit[u.index]]
    done = _done_records(out, tasks) if resume else {}
    keep_files = {s["name"] for r in done.values() for s in r["shards"]} | {_record_name(i) for i in done}
    for name in os.listdir(out):  # shards of units to redo, partial files, and units this run does not write
        if name.endswith((".tar", ".partial")) and name not in keep_files or ".tmp" in name:
            (out / name).unlink()
    if (out / UNITS_DIR).is_dir():
        for name in os.listdir(out / UNITS_DIR):
            if f"{UNITS_DIR}/{name}" not in keep_files:
                (out / UNITS_DIR / name).unlink()
    (out / UNITS_DIR).mkdir(exist_ok=True)
    pending = [t for t in tasks if t.unit.index not in done]
    if done:
        log.info("curate --resume: %d of %d units already written, %d to write", len(done), len(tasks), len(pending))
    with _Bar(len(tasks), "curate: write", run.progress, initial=len(done)) as bar:
        def on_written(record: dict[str, Any]) -> None:
            done[record["unit"]] = record
            bar.update(1)

        run.execute(_write_unit, pending, on_written)
    shards = [ShardInfo(**info) for t in tasks for info in done[t.unit.index]["shards"]]

    licenses: dict[str, int] = {}
    for g in np.flatnonzero(alive):
        lic = sigs[g].license or "unknown"
        licenses[lic] = licenses.get(lic, 0) + 1
    against = [a for r in step_reports if r["step"] == "decontaminate" for a in r.get("against", [])]
    curation = {
        "inputs": described,
        "steps": [s.describe() for s in step_objs],
        "funnel": funnel,
        "removed_by_step": {s.name: sum(1 for r in removals if r["step"] == s.name) for s in step_objs},
        "decontaminated": bool(against),
        "decontaminated_against": against,
        "keys_renamed": renamed,
        "removed": removals,
        "report": "report.json",
    }
    manifest = Manifest(shards=shards, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        source={"domain": "core", "name": "curate", "options": {"steps": steps}},
                        ingest={"inputs_seen": n, "samples_written": int(alive.sum()), "inputs_skipped": 0,
                                "skipped": [], "counters": {"license": dict(sorted(licenses.items())),
                                                            "removed_by_step": curation["removed_by_step"]},
                                # the trainer copies ingest (less skips) into train_summary.json: the model card
                                # and registry tags can say what the training data was decontaminated against
                                "notes": {"curated": True, "decontaminated_against": against,
                                          **({"preprocess": run.preprocess} if run.preprocess is not None else {})}})
    if manifest.num_samples != int(alive.sum()):
        raise RuntimeError(f"curate wrote {manifest.num_samples} samples but kept {int(alive.sum())}: shards changed "
                           "while curating?")
    data = json.loads(manifest.to_json())
    data["curation"] = curation
    report = {"inputs": described, "funnel": funnel, "steps": step_reports, "samples_in": n,
              "samples_out": int(alive.sum()), "decontaminated_against": against, "workers": run.workers,
              "engine": run.engine, "units_resumed": len(tasks) - len(pending),
              "seconds": round(time.time() - run.t0, 2)}
    write_report(out, report)
    atomic_write_text(out / MANIFEST_NAME, json.dumps(data, indent=2, default=str))  # last: the commit record
    shutil.rmtree(out / UNITS_DIR, ignore_errors=True)  # after it: a kill before leaves records for --resume
    return report


def read_curation(folder: str | Path) -> dict[str, Any]:
    """The ``curation`` section of a curated shard set's manifest (empty for a set that was not curated)."""
    from clipzoo.core.data.writer import MANIFEST_NAME

    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("curation", {})
