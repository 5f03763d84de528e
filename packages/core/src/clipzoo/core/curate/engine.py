"""``run_curate``: shard sets in, a curated shard set and its report out, in two parallel passes.

1. **Signatures** (parallel, one work unit per input shard): each worker reads its shard and returns one
   small :class:`~clipzoo.core.curate.signatures.Signature` per sample (hashes, caption MinHash, matched
   metadata entries, filter features, CLIP score).
2. **Decisions** (driver): the steps run in recipe order over the signatures, each on the samples the
   steps before it kept. Memory is bounded by these indexes, never by the corpus: no pixel reaches the driver.
3. **Write** (parallel, one unit per input shard): each worker copies its shard's kept samples byte for byte
   (no re-encoding) into shards of its own under ``OUT/.units``; the driver moves them into ``OUT`` and
   writes ``manifest.json`` last, atomically (the commit record), with a ``curation`` section naming every
   removal by key, step and reason, then the report (JSON, Markdown, PNG).

The output depends only on the inputs and the recipe, not on the worker count.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from clipzoo.core.curate.signatures import SignatureSpec, iter_shard, shard_signatures
from clipzoo.core.curate.steps import CurateError, Step, build_steps

log = logging.getLogger("clipzoo.curate")

UNITS_DIR = ".units"
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


def plan_units(inputs: list[Path]) -> tuple[list[WorkUnit], list[dict[str, Any]]]:
    """Work units of the input shard sets (their manifests), in input order; refuses a folder without one."""
    from clipzoo.core.data.writer import MANIFEST_NAME, Manifest

    units: list[WorkUnit] = []
    described = []
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
    return units, described


def _signatures_unit(unit: WorkUnit, spec: SignatureSpec):
    return shard_signatures(unit.url, spec, unit.index, unit.set_index, unit.order0, unit.bytes)


def _write_unit(unit: WorkUnit, keep: dict[str, str], out_dir: str, max_count: int) -> list[dict[str, Any]]:
    """Copy the kept samples (``{old key: new key}``) of one input shard into ``out_dir/.units/uNNNNN``."""
    from dataclasses import asdict

    from clipzoo.core.data.writer import ShardWriter

    folder = Path(out_dir) / UNITS_DIR / f"u{unit.index:05d}"
    if folder.exists():
        shutil.rmtree(folder)
    writer = ShardWriter(folder, prefix=f"curated-{unit.index:05d}", max_count=max_count)
    with writer:
        for sample in iter_shard(unit.url, unit.bytes):
            new_key = keep.get(sample["__key__"])
            if new_key is not None:
                writer.write({**sample, "__key__": new_key})
    return [asdict(s) for s in writer.manifest.shards]


def _map(fn: Callable, items: list, workers: int, desc: str, progress: bool, freeze: bool = False) -> list:
    """``fn`` over ``items`` in a process pool (in this process for one worker), results in item order.

    ``freeze``: move each result into the garbage collector's permanent generation as it arrives. The driver
    holds a few objects per sample for the whole run; without this every full collection rescans all of them
    and the decision pass grows faster than the corpus.
    """
    import gc

    from tqdm import tqdm

    bar = tqdm(total=len(items), desc=desc, unit="shard", disable=not progress)
    out = []
    try:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                out.append(fn(*item))
                bar.update(1)
                if freeze:
                    gc.freeze()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(fn, *zip(*items)):
                    out.append(result)
                    bar.update(1)
                    if freeze:
                        gc.freeze()
    finally:
        bar.close()
    return out


def _prepare_out(out: Path, overwrite: bool) -> None:
    from clipzoo.core.data.writer import MANIFEST_NAME

    if out.exists() and not out.is_dir():
        raise CurateError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise CurateError(f"--out {out}: folder is not empty; pass --overwrite to replace what is there")
        (out / MANIFEST_NAME).unlink(missing_ok=True)  # first: a crash from here on leaves no valid shard set
        for old in [*out.glob("*.tar"), *(out / name for name in REPORT_FILES)]:
            old.unlink(missing_ok=True)
        shutil.rmtree(out / UNITS_DIR, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


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
               shard_size: int = 10_000, overwrite: bool = False, progress: bool = True,
               tracking_uri: str | None = None) -> dict[str, Any]:
    """Curate ``inputs`` (shard folders) into ``out`` with ``steps`` (a recipe's list); return the report dict."""
    t0 = time.time()
    inputs = [Path(p) for p in inputs]
    out = Path(out)
    if not inputs:
        raise CurateError("give at least one input shard folder")
    if out.resolve() in {p.resolve() for p in inputs}:
        raise CurateError(f"--out {out} is one of the inputs; write the curated set to a new folder")
    if shard_size < 1 or workers < 1:
        raise CurateError("--shard-size and --workers must be >= 1")
    step_objs: list[Step] = build_steps(steps)
    units, described = plan_units(inputs)
    spec = SignatureSpec(phash=False, tracking_uri=tracking_uri)
    for step in step_objs:
        step.prepare(spec)
    for step in step_objs:  # benchmark data is read before anything is written, so a bad reference stops early
        if hasattr(step, "load_reference"):
            step.load_reference()
    _prepare_out(out, overwrite)

    # pass 1: signatures, one unit per input shard
    try:
        per_unit = _map(_signatures_unit, [(u, spec) for u in units], workers, "curate: signatures", progress,
                        freeze=True)
        return _decide_and_write(units, described, per_unit, step_objs, steps, out, workers, shard_size, progress, t0)
    finally:
        import gc

        gc.unfreeze()


def _decide_and_write(units: list[WorkUnit], described: list[dict[str, Any]], per_unit: list, step_objs: list[Step],
                      steps: list[Any], out: Path, workers: int, shard_size: int, progress: bool,
                      t0: float) -> dict[str, Any]:
    """The driver's decisions over the signatures, then pass 2 (see the module docstring)."""
    from clipzoo.core.curate.report import write_report
    from clipzoo.core.data.writer import MANIFEST_NAME, Manifest, ShardInfo, atomic_write_text

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

    # pass 2: copy the kept samples, one unit per input shard
    items = [(u, keep_by_unit[u.index], str(out), shard_size) for u in units if keep_by_unit[u.index]]
    written = _map(_write_unit, items, workers, "curate: write", progress)
    shards = []
    for unit_shards in written:
        for info in unit_shards:
            unit_dir = out / UNITS_DIR / f"u{int(info['name'].split('-')[1]):05d}"
            os.replace(unit_dir / info["name"], out / info["name"])
            shards.append(ShardInfo(**info))
    shutil.rmtree(out / UNITS_DIR, ignore_errors=True)

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
                                "notes": {"curated": True, "decontaminated_against": against}})
    if manifest.num_samples != int(alive.sum()):
        raise RuntimeError(f"curate wrote {manifest.num_samples} samples but kept {int(alive.sum())}: shards changed "
                           "while curating?")
    data = json.loads(manifest.to_json())
    data["curation"] = curation
    report = {"inputs": described, "funnel": funnel, "steps": step_reports, "samples_in": n,
              "samples_out": int(alive.sum()), "decontaminated_against": against, "workers": workers,
              "seconds": round(time.time() - t0, 2)}
    write_report(out, report)
    atomic_write_text(out / MANIFEST_NAME, json.dumps(data, indent=2, default=str))  # last: the commit record
    return report


def read_curation(folder: str | Path) -> dict[str, Any]:
    """The ``curation`` section of a curated shard set's manifest (empty for a set that was not curated)."""
    from clipzoo.core.data.writer import MANIFEST_NAME

    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("curation", {})
