"""The ingest engine: a shard set written as a transaction of work units, in a process pool or on Ray.

One run, start to end::

    refuse a non-empty --out (unless --overwrite / --resume)  ->  lock --out  ->  plan the work units
      -> [--overwrite: remove the old manifest FIRST, then old shards and unit records]
      -> [--resume: keep units with a done record, delete the leftovers of the others]
      -> run the pending units (in-process, ProcessPoolExecutor, or Ray tasks); each unit writes
         {prefix}-u{unit:05d}-{index:06d}.tar shards and then its done record _units/u{unit:05d}.json
      -> merge the done records in unit order -> write manifest.json LAST (the commit record) -> unlock

A folder is a finished shard set only when its manifest exists, and the manifest only ever names shards
whose done record was written after they were fsynced, so a kill at any moment leaves either the previous
complete set (never mixed: ``--overwrite`` deletes the old manifest before touching anything else) or a
folder without a manifest that ``--resume`` completes. Units are read by fresh copies of the source, so the
samples, keys and bytes do not depend on the worker count, the engine, or on kill + resume.

One bad input never stops a run: when reading a unit raises an unexpected exception, the unit's output is
discarded, each of its inputs is read on its own to find the one(s) that raise, those are skipped with
``kind="error"`` and the exception's type and message (traceback at DEBUG; in both, the inputs' paths are
named as the source's ``record_path`` names them), and the unit is read again without them, so sources that
join inputs inside a unit (a DICOM series) keep doing so.

Locking: a local ``--out`` is locked with ``filelock`` (``.ingest.lock``; the holder's pid, host and start
time are in ``.ingest.lock.json``), released by the OS if the process dies. Object storage has no such
lock: the engine creates ``.ingest.lock.json`` with create-if-absent where the backend supports it
(fsspec ``"xb"`` mode) and otherwise checks for it and warns that two runs started at the same moment are
not excluded. A killed run leaves that object behind; the error message says to delete it.

:func:`execute` (in process, process pool, Ray) and :class:`OutLock` are the data engine's parts that
``clipzoo curate`` runs on too (:mod:`clipzoo.core.curate.engine`); the lock record names which command holds it.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import hashlib
import importlib
import json
import logging
import multiprocessing
import os
import pickle
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from clipzoo.core.data.writer import (MANIFEST_NAME, DuplicateKeyError, Manifest, ShardInfo, ShardWriter,
                                     copy_shard_without, encode_sample)
from clipzoo.core.ingest import IngestError, IngestReport, Source, as_input, path_redactor, redacted_traceback
from clipzoo.core.io import Storage

log = logging.getLogger("clipzoo.core.ingest")

UNITS_DIR = "_units"
PLAN_NAME = "plan.json"
LOCK_NAME = ".ingest.lock"
LOCK_INFO = ".ingest.lock.json"
ENGINES = ("process", "ray")


@dataclass(frozen=True)
class EngineSettings:
    """What decides the bytes of a shard set besides the source and its inputs (recorded in the plan)."""

    prefix: str = "shard"
    max_count: int = 10_000
    max_bytes: int = 1 << 30
    unit_size: int | None = None  # None: derived from the number of inputs (plan_units)
    image_format: str | None = None
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.unit_size is not None and self.unit_size < 1:
            raise IngestError(f"--unit-size must be at least 1, not {self.unit_size}")
        if self.image_format not in (None, "png", "jpg"):
            raise IngestError(f"--image-format must be png or jpg, not {self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise IngestError(f"--jpeg-quality must be 1..100, not {self.jpeg_quality}")
        if self.max_count < 1 or self.max_bytes < 1:
            raise IngestError("--shard-size and --shard-bytes must be positive")


@dataclass
class UnitTask:
    """One work unit as sent to a worker (picklable: the source travels as a copy of the driver's)."""

    source: Source
    unit: int
    inputs: list[str]
    out: str
    settings: EngineSettings


def unit_record_name(unit: int) -> str:
    return f"{UNITS_DIR}/u{unit:05d}.json"


def _unit_prefix(settings: EngineSettings, unit: int) -> str:
    return f"{settings.prefix}-u{unit:05d}-"


# -- one unit (runs in a worker) ------------------------------------------------------------------
def _attempt(task: UnitTask, inputs: list, report: IngestReport, storage: Storage) -> ShardWriter:
    """Read ``inputs`` with a fresh copy of the source into this unit's shards; on any exception remove what
    this attempt wrote and re-raise."""
    staging = Path(storage.root) if storage.local else Path(tempfile.mkdtemp(prefix="clipzoo-unit-"))

    def upload(path: Path, info: ShardInfo) -> None:  # object storage: each finished shard goes up at once
        storage.put(path, info.name)

    s = task.settings
    writer = ShardWriter(staging, prefix=s.prefix, max_count=s.max_count, max_bytes=s.max_bytes, unit=task.unit,
                         image_format=s.image_format, jpeg_quality=s.jpeg_quality, write_manifest=False,
                         on_shard=None if storage.local else upload)
    try:
        for sample in _fresh(task.source).samples(inputs, report):
            writer.write(sample)
        writer.close()
        return writer
    except BaseException:
        writer._abort()
        for info in writer.manifest.shards:
            storage.remove(info.name)
        raise
    finally:
        if not storage.local:
            for leftover in staging.iterdir():
                leftover.unlink()
            staging.rmdir()


def _fresh(source: Source) -> Source:
    """A copy of the source in its configured and planned state (what :meth:`Source.units` recorded, e.g. the
    inputs as named), so no unit sees another unit's state (e.g. used keys)."""
    try:
        return copy.deepcopy(source)
    except Exception as exc:  # rebuilt from its options, it would lose the planned state: names, keys would change
        raise IngestError(f"the {source.name} source cannot be copied for a work unit ({type(exc).__name__}: "
                          f"{exc}); this is a bug in the source (it holds an object that cannot be copied)") from None


def _probe(task: UnitTask, item) -> BaseException | None:
    """The exception reading ``item`` alone raises (encoding included), or None when it reads cleanly."""
    s = task.settings
    previous = logging.root.manager.disable  # a caller's own setting (with --workers 1 this is the driver)
    logging.disable(max(previous, logging.WARNING))  # the real read after the probes logs each skip once
    try:
        for sample in _fresh(task.source).samples([item], IngestReport()):
            if "json" not in sample or not sample.get("__key__"):
                raise ValueError(f"sample {sample.get('__key__')!r} has no key or no 'json' member")
            encode_sample(sample, image_format=s.image_format, jpeg_quality=s.jpeg_quality)
    except (IngestError, DuplicateKeyError):
        raise
    except Exception as exc:
        return exc
    finally:
        logging.disable(previous)
    return None


def _describe(exc: BaseException, redact: Callable[[str], str]) -> str:
    """A skip's reason for an input that raised: the exception's type and the first line of its message, with
    the inputs' paths as its source names them (``redact``, from :func:`path_redactor`)."""
    text = redact(str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")



def _local_input(source: Source, item: str):
    """An input as the source reads it: fsspec URLs copied to the local input cache unless the source reads
    URLs itself (GDAL ``/vsi...`` paths and ``pipe:`` commands always go through as they are)."""
    value = as_input(item)
    if isinstance(value, str) and "://" in value and not source.reads_urls:
        if value.startswith("file://"):
            return Path(value[len("file://"):])
        from clipzoo.core.io import stage_input

        try:
            return stage_input(value)
        except FileNotFoundError:
            return Path(value.split("://", 1)[1])  # the source reports the missing input as a skip
    return value


def run_unit(task: UnitTask) -> dict[str, Any]:
    """Read one work unit into its shards and write its done record; return the record."""
    storage = Storage(task.out)
    inputs = [_local_input(task.source, i) for i in task.inputs]
    report = IngestReport()
    try:
        writer = _attempt(task, inputs, report, storage)
    except (IngestError, DuplicateKeyError):
        raise
    except Exception as first:
        redact = path_redactor(inputs, task.source.record_path)  # as skips name inputs, in logs too
        log.debug("unit %d failed; looking for the input that raises:\n%s", task.unit,
                  redacted_traceback(first, redact))
        report = IngestReport()
        bad = {str(item): exc for item in inputs if (exc := _probe(task, item)) is not None}
        if not bad:  # no input fails alone: the failure needs them together, so none of them can be kept
            bad = {str(item): first for item in inputs}
        for path, exc in bad.items():
            log.debug("%s raised:\n%s", task.source.record_path(path), redacted_traceback(exc, redact))
            report.skip(task.source.record_path(path), _describe(exc, redact), kind="error")
        good = [item for item in inputs if str(item) not in bad]
        writer = None
        if good:
            kept = IngestReport()
            try:
                writer = _attempt(task, good, kept, storage)
                kept.skipped[:0] = report.skipped
                kept.counters["skipped_by_kind"].update(report.counters["skipped_by_kind"])
                report = kept
            except (IngestError, DuplicateKeyError):
                raise
            except Exception as again:
                log.debug("unit %d failed again without its bad inputs:\n%s", task.unit,
                          redacted_traceback(again, redact))
                for item in good:
                    report.skip(task.source.record_path(item),
                                f"read together with the other inputs of its unit: {_describe(again, redact)}",
                                kind="error")
    record = {
        "unit": task.unit,
        "inputs": [input_fingerprint(i) for i in task.inputs],
        "shards": [asdict(i) for i in (writer.manifest.shards if writer else [])],
        "keys": writer.keys if writer else [],
        "groups": writer.groups if writer else {},
        "report": report.state(),
    }
    storage.write_text(unit_record_name(task.unit), json.dumps(record))
    return record


# -- lock -----------------------------------------------------------------------------------------
class OutLock:
    """The exclusive lock on an ingest's (or a curate's: ``command``) ``--out`` (see the module docstring for
    object storage). The lock record names the command, so a run refused by another names what holds it."""

    def __init__(self, storage: Storage, command: str = "ingest"):
        self.storage = storage
        self.command = command
        self._lock = None
        self._remote_owned = False

    def _holder(self) -> tuple[str, str]:
        """(the holder's command, "pid P on HOST, started T") from the lock record."""
        try:
            info = json.loads(self.storage.read_text(LOCK_INFO))
            return info.get("command", "ingest"), f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError):
            return "run", "holder unknown"

    def acquire(self) -> None:
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        if self.storage.local:
            from filelock import FileLock, Timeout

            self._lock = FileLock(self.storage.path(LOCK_NAME))
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                self._lock = None
                command, holder = self._holder()
                raise IngestError(f"--out {self.storage}: another {command} is writing there ({holder}); "
                                  "wait for it to finish or choose another --out") from None
            self.storage.write_text(LOCK_INFO, info)
            return
        created = self.storage.create_exclusive(LOCK_INFO, info)
        if created is None:
            if self.storage.exists(LOCK_INFO):
                created = False
            else:
                log.warning("%s: this storage cannot create an object only if absent; two ingests started at the "
                            "same moment into it are not excluded", self.storage)
                self.storage.write_text(LOCK_INFO, info)
                created = True
        if not created:
            command, holder = self._holder()
            raise IngestError(f"--out {self.storage}: another {command} is writing there ({holder}); wait for "
                              f"it, or if none is running (it was killed) delete {self.storage.url_of(LOCK_INFO)}")
        self._remote_owned = True

    def release(self) -> None:
        if self._lock is not None:
            self.storage.remove(LOCK_INFO)
            self._lock.release()
            self._lock = None
        elif self._remote_owned:
            self.storage.remove(LOCK_INFO)
            self._remote_owned = False


# -- driver ---------------------------------------------------------------------------------------
def _ours(name: str, prefix: str) -> bool:
    """Files a previous ingest into this folder may have left (what --overwrite removes)."""
    return (name in (MANIFEST_NAME, UNITS_DIR) or name.endswith((".tar", ".partial"))
            or (name.startswith(prefix + "-") and ".tar" in name) or ".tmp" in name)


def _contents(storage: Storage) -> list[str]:
    return [n for n in storage.list() if n not in (LOCK_NAME, LOCK_INFO)]


def input_fingerprint(item) -> str:
    """How the plan and the done records name an input: a one-way hash of its path as given.

    They only need to tell whether ``--resume`` was given the same inputs; the path itself stays out of the
    output folder, since an export folder is often named after the patient (``SURNAME^GIVEN_19610704/``).
    """
    return hashlib.sha256(str(item).encode("utf-8")).hexdigest()[:16]


#: Without ``--unit-size`` the inputs are cut into about this many units (so every worker of a pool of up to
#: ~16 gets several), and no unit holds more than UNIT_SIZE_MAX of them (the grain of --resume stays small).
UNIT_TARGET = 64
UNIT_SIZE_MAX = 64


def derived_unit_size(n_items: int) -> int:
    """Inputs per work unit when the user did not choose one: from the number of inputs only, never from the
    worker count, so 1, 2 or N workers (or Ray) write the same shards. 48 inputs give 48 units of 1 (not one
    unit of 64 that a single worker reads while the others idle); 10 000 give 157 units of 64."""
    return max(1, min(UNIT_SIZE_MAX, -(-n_items // UNIT_TARGET)))


def plan_units(source: Source, inputs: list, unit_size: int | None, report: IngestReport) -> list[list]:
    """The work units of a run: ``source.units`` at the chosen size, or, with none chosen, the source's finest
    units (``unit_size=1``: a file, a DICOM series, everything when it joins inputs) packed in order into units
    of at most :func:`derived_unit_size` inputs (a bigger finest unit stays whole), the rule the default
    ``Source.units`` and the series-keeping DICOM source follow themselves, planned once."""
    if unit_size is None and source.checks_across_inputs:
        unit_size = UNIT_SIZE_MAX
    if unit_size is not None:
        return source.units(inputs, unit_size, report)
    finest = source.units(inputs, 1, report)
    size = derived_unit_size(sum(len(u) for u in finest))
    units: list[list] = []
    for unit in finest:
        if not units or len(units[-1]) + len(unit) > size:
            units.append([])
        units[-1].extend(unit)
    return units


def _plan(source: Source, units: list[list], settings: EngineSettings) -> dict[str, Any]:
    return {"source": json.loads(json.dumps(source.describe(), default=str)), "settings": asdict(settings),
            "units": [[input_fingerprint(i) for i in unit] for unit in units]}


def _done_records(storage: Storage, plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Done records of this plan whose shards are all present at their recorded size."""
    done = {}
    names = set(storage.list())
    for entry in storage.list(UNITS_DIR):
        if not (entry.startswith("u") and entry.endswith(".json")):
            continue
        try:
            record = json.loads(storage.read_text(f"{UNITS_DIR}/{entry}"))
            unit = int(record["unit"])
        except (OSError, ValueError, KeyError):
            continue  # a record is written atomically; an unreadable one is not ours: redo the unit
        if unit >= len(plan["units"]) or record["inputs"] != plan["units"][unit]:
            continue
        if all(s["name"] in names and storage.size(s["name"]) == s["bytes"] for s in record["shards"]):
            done[unit] = record
    return done


def _remove_unit_leftovers(storage: Storage, settings: EngineSettings, pending: set[int]) -> None:
    for name in storage.list():
        if name.startswith(settings.prefix + "-u") and len(name) > len(settings.prefix) + 7:
            try:
                unit = int(name[len(settings.prefix) + 2:len(settings.prefix) + 7])
            except ValueError:
                continue
            if unit in pending:
                storage.remove(name)
        elif name.endswith(".partial") or ".tmp" in name:
            storage.remove(name)
    for unit in pending:
        storage.remove(unit_record_name(unit))


def default_workers() -> int:
    """The cores this process may run on (``sched_getaffinity`` honours taskset/cgroup CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


#: Set (when unset) in the forkserver's environment: it imports numpy & co. before any worker exists, so a
#: worker's thread pools are sized there; one thread each, as the pool itself is the parallelism. A source's
#: own tqdm bars (chips of one raster, files of one series) are off in workers: several workers' bars would
#: garble the driver's one bar of units (tqdm reads TQDM_* when it is imported, so it must be set here).
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _init_worker(level: int, preload: tuple[str, ...] = ()) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for key, value in _WORKER_ENV.items():
        os.environ.setdefault(key, value)
    # A forkserver started earlier in this process (another source's pool) has other modules preloaded; import
    # what is missing now, at the worker's start, rather than inside its first unit. Already loaded: a no-op.
    for name in preload:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError:  # as the forkserver's own preload: a missing optional reader fails where it is used
                pass


def _may_need_a_pool(inputs) -> bool:
    """Whether the inputs may plan into several units, so the pool's forkserver is worth starting before planning:
    more than one input, or a folder. One file (a scan, one raster) is usually one unit, read in this process; a
    large raster cut into windows starts the pool after planning instead, having lost only the overlap."""
    items = list(inputs)
    return len(items) > 1 or any(isinstance(i, Path) and i.is_dir() for i in items)


def _pool_context(preload: tuple[str, ...]):
    """The process pool's multiprocessing context, its forkserver started now (idempotent).

    Workers fork from a server that imported the engine and the task's modules (a source's readers: pydicom,
    rasterio, lxml ...) once, so a worker starts in milliseconds instead of re-importing them (0.3-1 s each,
    paid inside its first unit, which on a short run is a large part of a worker's time). Starting the server
    early lets those imports run while the driver plans the units. The preload is fixed when the server
    starts (once per driver process); :func:`_init_worker` imports what a later source needs on top.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(dict.fromkeys([__name__, *preload])))
    unset = {k: v for k, v in _WORKER_ENV.items() if k not in os.environ}
    os.environ.update(unset)  # the server inherits this process's environment when it is spawned
    try:
        forkserver.ensure_running()
    finally:
        for key in unset:
            os.environ.pop(key, None)
    return ctx


def execute(fn: Callable[[Any], Any], tasks: list, on_done: Callable[[Any], None], *, workers: int = 1,
            engine: str = "process", ray_address: str | None = None, preload: tuple[str, ...] = ()) -> None:
    """Run ``fn(task)`` for every task and hand each result to ``on_done`` in the driver, as results arrive.

    The one executor of the data engine (ingest units, curate passes): in this process for one worker (or one
    task), a process pool of ``workers`` (forkserver with ``preload`` modules imported once), or Ray tasks
    (``ray_address`` joins a cluster, default a local instance of ``workers`` CPUs). ``fn`` must be a
    module-level function and the tasks picklable. Results arrive in completion order; a caller that needs
    task order keys them. The first exception a task raises stops the run and is re-raised here as it was.
    """
    if engine not in ENGINES:
        raise IngestError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "ray":
        _execute_ray(fn, tasks, workers, ray_address, on_done)
    elif workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            on_done(fn(task))
    else:
        _execute_pool(fn, tasks, workers, on_done, preload)


def _execute_pool(fn: Callable[[Any], Any], tasks: list, workers: int, on_done: Callable[[Any], None],
                  preload: tuple[str, ...]) -> None:
    preload = tuple(dict.fromkeys([fn.__module__, *preload]))
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(preload), initializer=_init_worker,
                                initargs=(logging.getLogger().getEffectiveLevel(), preload)) as pool:
        futures = [pool.submit(fn, t) for t in tasks]
        try:
            for future in cf.as_completed(futures):
                on_done(future.result())
        except cf.process.BrokenProcessPool:
            raise IngestError("a worker process died (killed, or out of memory?) while running a work unit; "
                              "re-run with --resume to finish the other units") from None
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _execute_ray(fn: Callable[[Any], Any], tasks: list, workers: int, address: str | None,
                 on_done: Callable[[Any], None]) -> None:
    try:
        import ray
    except ImportError:
        raise IngestError("--engine ray needs the ray package: pip install clipzoo-core[ray]") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
        ray.init(include_dashboard=False, logging_level=logging.WARNING, **kwargs)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    on_done(ray.get(ref))
                except ray.exceptions.RayTaskError as exc:
                    for ref_left in pending:
                        ray.cancel(ref_left)
                    cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                    raise cause from None
    finally:
        if started:
            ray.shutdown()


def run_units(
    source: Source,
    inputs: list[Path | str],
    out: str | Path,
    settings: EngineSettings,
    *,
    workers: int = 1,
    engine: str = "process",
    ray_address: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the shard set of ``source`` over ``inputs`` into ``out`` (see the module docstring).

    ``workers`` processes (or Ray tasks at a time with ``engine="ray"``; ``ray_address`` joins a running
    cluster, default a local instance) read the units; ``overwrite`` replaces an existing set, ``resume``
    finishes an interrupted run with the same inputs and settings. Returns the manifest's ingest part.
    """
    if engine not in ENGINES:
        raise IngestError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if overwrite and resume:
        raise IngestError("--overwrite and --resume exclude each other: replace the set, or finish it")
    if workers < 1:
        raise IngestError(f"--workers must be at least 1, not {workers}")
    storage = Storage(out)
    started = time.monotonic()
    existed = storage.exists()
    lock_existed = existed and storage.exists(LOCK_NAME)
    if not existed:
        storage.makedirs()
    lock = OutLock(storage)
    lock.acquire()  # first: "another ingest is writing there (pid ...)" says more than "not empty"
    state = {"planned": False, "refused": False}
    try:
        return _run_locked(source, inputs, out, storage, settings, workers, engine, ray_address, overwrite,
                           resume, progress, started, state)
    except IngestError:
        # A whole-run problem (bad options, a source refusing its inputs) before any unit finished: remove what
        # this run wrote, so it counts as never started and the next run is not refused.
        if state["planned"] and not resume and storage.list(UNITS_DIR) == [PLAN_NAME]:
            for name in _contents(storage):
                if name == UNITS_DIR or name.startswith(settings.prefix + "-u"):
                    storage.remove(name)
        raise
    finally:
        lock.release()
        if storage.local and not lock_existed and (state["refused"] or not _contents(storage)):
            storage.remove(LOCK_NAME)  # nothing was written: leave no lock file behind either
            if not existed:
                os.rmdir(storage.root)


def _run_locked(source, inputs, out, storage, settings, workers, engine, ray_address, overwrite, resume, progress,
                started, state) -> dict[str, Any]:
    """:func:`run_units` once ``--out`` is locked."""
    from tqdm import tqdm

    contents = _contents(storage)
    if contents and not (overwrite or resume):
        state["refused"] = True
        raise IngestError(f"--out {out} is not empty ({len(contents)} entries); add --overwrite to replace what is "
                          "there, --resume to finish an interrupted ingest, or choose a new folder")
    preload = (type(source).__module__, *source.worker_imports)
    if engine == "process" and workers > 1 and _may_need_a_pool(inputs):
        _pool_context(preload)  # the forkserver imports the readers while this process plans the units
    plan_report = IngestReport()
    units = plan_units(source, list(inputs), settings.unit_size, plan_report)
    plan = _plan(source, units, settings)
    done: dict[int, dict[str, Any]] = {}
    if overwrite and contents:
        storage.remove(MANIFEST_NAME)  # first: from here on the folder is not a shard set any more
        for name in contents:
            if _ours(name, settings.prefix):
                storage.remove(name)
    elif resume and contents:
        if not storage.exists(f"{UNITS_DIR}/{PLAN_NAME}"):
            raise IngestError(f"--resume: {out} holds no record of an interrupted run ({UNITS_DIR}/{PLAN_NAME}); "
                              "use --overwrite to write it anew")
        old = json.loads(storage.read_text(f"{UNITS_DIR}/{PLAN_NAME}"))
        if old != plan:
            what = [k for k in ("source", "settings", "units") if old.get(k) != plan[k]]
            raise IngestError(f"--resume: the {' and '.join(what)} differ from the interrupted run's in {out}; "
                              "resume with the same command, or use --overwrite to start again")
        done = _done_records(storage, plan)
        if len(done) < len(units):
            storage.remove(MANIFEST_NAME)
    pending = [u for u in range(len(units)) if u not in done]
    _remove_unit_leftovers(storage, settings, set(pending))
    storage.makedirs(UNITS_DIR)
    storage.write_text(f"{UNITS_DIR}/{PLAN_NAME}", json.dumps(plan, indent=1))
    state["planned"] = not done

    tasks = [UnitTask(source, u, [str(i) for i in units[u]], str(out), settings) for u in pending]
    used = 1 if engine == "process" and len(tasks) <= 1 else min(workers, max(len(tasks), 1))
    bar = tqdm(total=len(units), initial=len(done), desc=f"ingest {source.domain} {source.name}", unit="unit",
               disable=not progress)

    def on_done(record: dict[str, Any]) -> None:
        done[record["unit"]] = record
        bar.update(1)
        bar.set_postfix(samples=sum(len(r["keys"]) for r in done.values()), refresh=False)

    if engine == "process" and used > 1:
        try:
            pickle.dumps(source)
        except Exception as exc:
            raise IngestError(f"the {source.name} source cannot be sent to worker processes ({exc}); "
                              "use --workers 1") from None
    try:
        execute(run_unit, tasks, on_done, workers=used, engine=engine, ray_address=ray_address, preload=preload)
    finally:
        bar.close()
    summary, manifest = _merge(source, plan_report, [done[u] for u in range(len(units))], settings,
                               [[source.record_path(i) for i in unit] for unit in units], storage)
    manifest.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    storage.write_text(MANIFEST_NAME, manifest.to_json())  # the commit record, last
    by_kind = summary["counters"].get("skipped_by_kind", {})
    skips = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items())) or "none"
    log.info("ingest %s %s: %d samples in %d shards from %d inputs; skipped: %s; %d units (%d resumed), "
             "%d %s, %.1f s", source.domain, source.name, summary["samples_written"], len(manifest.shards),
             summary["inputs_seen"], skips, len(units), len(units) - len(tasks), used,
             "Ray tasks" if engine == "ray" else "worker" + ("s" if used != 1 else ""), time.monotonic() - started)
    return summary


def _merge(source: Source, plan_report: IngestReport, records: list[dict[str, Any]], settings: EngineSettings,
           unit_names: list[list[str]], storage: Storage) -> tuple[dict[str, Any], Manifest]:
    """One manifest from the done records, in unit order.

    A sample group (such as an article, the ``__group__`` of its figures) that an earlier unit read is dropped from
    the later unit (:func:`_drop_repeats`): a source drops a repeated group within a unit (an article seen twice is
    ingested once), and so the set holds the same samples, counts and skips however the inputs fall into units.
    Any other key that two units wrote is a bug in the source's key scheme, and an error.
    """
    report = plan_report
    manifest = Manifest(source=source.describe())
    first: dict[str, tuple[int, str | None]] = {}  # group -> the unit whose copy is kept, and its input
    repeats: dict[int, dict[str, list[str]]] = {}  # unit -> {group another unit read first: its keys here}
    for record in records:
        for group, (keys, input_) in _unit_groups(record).items():
            kept = first.setdefault(group, (record["unit"], input_))
            if kept[0] != record["unit"]:
                repeats.setdefault(record["unit"], {})[group] = keys
    owner: dict[str, int] = {}
    for record in records:
        dropped = {k for keys in repeats.get(record["unit"], {}).values() for k in keys}
        for key in record["keys"]:
            other = owner.setdefault(key, record["unit"])
            if other != record["unit"] and key not in dropped:
                raise IngestError(f"sample key {key!r} comes from unit {other} ({', '.join(unit_names[other])})"
                                  f" and unit {record['unit']} ({', '.join(unit_names[record['unit']])}): keys must "
                                  "be unique across inputs; this is a bug in the source's key scheme")
    for record in records:
        if record["unit"] in repeats:
            _drop_repeats(storage, record, repeats[record["unit"]], first, unit_names)
        report.merge(record["report"])
        manifest.shards.extend(ShardInfo(**s) for s in record["shards"])
    summary = report.to_dict(manifest.num_samples)
    summary["units"] = len(records)
    # as chosen, or (not chosen) the derived size: the most inputs any unit holds
    summary["unit_size"] = settings.unit_size or max((len(u) for u in unit_names), default=0)
    manifest.ingest = summary
    return summary, manifest


def _unit_groups(record: dict[str, Any]) -> dict[str, tuple[list[str], str | None]]:
    """The sample groups a unit read, ``{group: (the keys of its samples, its input)}``: those it wrote samples of
    and those read in an :meth:`IngestReport.grouped` block, such as an article without figures."""
    read = record["report"].get("groups", {})
    written = record.get("groups", {})
    return {g: (written.get(g, []), read.get(g, {}).get("source")) for g in dict.fromkeys([*written, *read])}


def _drop_repeats(storage: Storage, record: dict[str, Any], repeated: dict[str, list[str]],
                  first: dict[str, tuple[int, str | None]], unit_names: list[list[str]]) -> None:
    """Rewrite a unit's shards without the samples of groups an earlier unit read, then its done record.

    Each affected shard is copied without those samples (:func:`copy_shard_without`) to a ``.partial`` file and
    moved over the old one; a shard left empty is removed. Each dropped group is one skip of kind ``duplicate``
    at the input the unit read it from (else its first key, else its name), saying where the kept copy came from,
    as a source's own check within a unit says it. What the unit counted and skipped for the group is
    taken back (:meth:`IngestReport.drop_groups`). The record is rewritten last: a crash in between leaves a
    shard whose size no longer matches the record, so ``--resume`` reads the unit again and the merge drops the
    repeats again.
    """
    drop = {k for keys in repeated.values() for k in keys}
    keys, at, shards = record["keys"], 0, []
    for shard in record["shards"]:
        inside = {k for k in keys[at:at + shard["samples"]] if k in drop}
        at += shard["samples"]
        if not inside:
            shards.append(shard)
            continue
        fd, tmp = tempfile.mkstemp(suffix=".partial", dir=storage.root if storage.local else None)
        try:
            with storage.open(shard["name"]) as src, os.fdopen(fd, "wb") as dst:
                count, size, sha = copy_shard_without(src, dst, inside)
            if count:
                storage.put(tmp, shard["name"])
                shards.append(asdict(ShardInfo(shard["name"], count, size, sha)))
            else:
                storage.remove(shard["name"])
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    skips = IngestReport()
    state = IngestReport.from_state(record["report"])
    for group, lost in repeated.items():
        unit, kept_from = first[group]
        names = unit_names[unit]
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        where = f"from {kept_from}" if kept_from else f"in work unit {unit} ({', '.join(names[:3])}{more})"
        at = state.groups.get(group, {}).get("source") or (lost[0] if lost else group)
        skips.skip(at, f"{group} already ingested {where}", kind="duplicate")
    state.drop_groups(repeated)  # what the unit counted and skipped for them: one unit would not have
    state.merge(skips.state())
    record.update(shards=shards, keys=[k for k in keys if k not in drop], report=state.state(),
                  groups={g: k for g, k in record["groups"].items() if g not in repeated})
    storage.write_text(unit_record_name(record["unit"]), json.dumps(record))
