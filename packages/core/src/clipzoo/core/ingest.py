"""The ingest contract every domain follows.

``clipzoo ingest DOMAIN SOURCE INPUT... --out DIR [source options]`` finds the registered
:class:`Source`, lets it add its options to the command's parser, splits the inputs into work units
(:meth:`Source.units`) and runs the source over each unit, writing what it yields through
:class:`~clipzoo.core.data.writer.ShardWriter`. The units run in a process pool or as Ray tasks, and the
manifest is written last as the commit record (:mod:`clipzoo.core.ingest_engine`). The source reports what
it saw and what it skipped on the :class:`IngestReport`; the merged reports become ``manifest.json["ingest"]``.

A source never raises for one bad input: it calls ``report.skip(path, reason)`` and goes on. The engine
holds that by construction too: an unexpected exception while reading an input becomes a skip of that
input (``kind="error"``, with the exception's type and message) and the run goes on. A source raises
:class:`IngestError` only for a problem with the whole run (bad options). The command exits 0 when it ran
to the end (skips included) and non-zero when nothing could be read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import traceback
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

log = logging.getLogger(__name__)

LOGGED_SKIPS = 20  # per kind; the manifest keeps all of them


class IngestError(Exception):
    """A problem with the whole ingest run (not with one input): reported as one line, exit 2."""


@dataclass
class IngestReport:
    """What an ingest run saw: inputs, skips with reasons, and named counters (e.g. per license)."""

    inputs_seen: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    counters: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    notes: dict[str, Any] = field(default_factory=dict)
    #: every sample group read in a :meth:`grouped` block, with what was counted and skipped inside: {group:
    #: {"counters": {...}, "skips": [indexes into skipped], "source": its input}}, so the engine can tell a group
    #: that another unit read first (with or without samples) and take back what it counted
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    _listed: set[str] = field(default_factory=set, repr=False)  # notes merged into per-unit lists
    _group: str | None = field(default=None, repr=False)

    def input_seen(self, path: str | Path) -> None:
        self.inputs_seen += 1

    @contextmanager
    def grouped(self, group: str, source: str | Path | None = None) -> Iterator[None]:
        """Read the sample group ``group`` (the ``__group__`` its samples carry, e.g. an article) from the input
        ``source``, attributing the counts and skips made inside to it. The group is recorded even if it yields no
        sample (an article without figures, or excluded by licence is still that article): if an earlier unit read
        the same group, the engine drops this unit's copy, its samples, counts and skips, so the manifest holds what
        one unit reading all inputs would have written."""
        entry = self.groups.setdefault(group, {"counters": {}, "skips": []})
        if source is not None:
            entry.setdefault("source", str(source))
        outer, self._group = self._group, group
        try:
            yield
        finally:
            self._group = outer

    def _in_group(self) -> dict[str, Any] | None:
        if self._group is None:
            return None
        return self.groups.setdefault(self._group, {"counters": {}, "skips": []})

    def skip(self, path: str | Path, reason: str, *, kind: str = "input") -> None:
        """Record an input (or an item inside one, e.g. a figure) that produced no sample.

        Every skip goes into the manifest; the log shows the first few of each kind, then a count.
        """
        self.skipped.append({"path": str(path), "reason": reason, "kind": kind})
        self.counters["skipped_by_kind"][kind] += 1
        group = self._in_group()
        if group is not None:
            group["skips"].append(len(self.skipped) - 1)
            by_kind = group["counters"].setdefault("skipped_by_kind", {})
            by_kind[kind] = by_kind.get(kind, 0) + 1
        n = self.counters["skipped_by_kind"][kind]
        if n <= LOGGED_SKIPS:
            log.warning("skipped %s: %s", path, reason)
        elif n == LOGGED_SKIPS + 1:
            log.warning("more %s skips follow; all are listed in manifest.json", kind)

    def count(self, counter: str, value: str, n: int = 1) -> None:
        self.counters[counter][str(value)] += n
        group = self._in_group()
        if group is not None:
            values = group["counters"].setdefault(counter, {})
            values[str(value)] = values.get(str(value), 0) + n

    def drop_groups(self, groups: Iterable[str]) -> None:
        """Take back what :meth:`grouped` blocks of ``groups`` counted and skipped (they are dropped as repeats)."""
        gone: set[int] = set()
        for name in groups:
            group = self.groups.pop(name, None)
            if group is None:
                continue
            gone.update(group["skips"])
            for counter, values in group["counters"].items():
                for value, n in values.items():
                    self.counters[counter][value] -= n
                    if self.counters[counter][value] <= 0:
                        del self.counters[counter][value]
                if not self.counters[counter]:
                    del self.counters[counter]
        if gone:
            index = {old: new for new, old in enumerate(i for i in range(len(self.skipped)) if i not in gone)}
            self.skipped = [s for i, s in enumerate(self.skipped) if i not in gone]
            for group in self.groups.values():
                group["skips"] = [index[i] for i in group["skips"] if i in index]

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "IngestReport":
        """The report a :meth:`state` describes, its sample groups included (:meth:`merge` leaves those out)."""
        report = cls()
        report.merge(state)
        report.groups = json.loads(json.dumps(state.get("groups", {})))
        return report

    def state(self) -> dict[str, Any]:
        """Everything the report holds, as JSON (a work unit's done record carries it to the driver)."""
        state = {"inputs_seen": self.inputs_seen, "skipped": self.skipped,
                 "counters": {k: dict(v) for k, v in self.counters.items()}, "notes": self.notes}
        if self.groups:
            state["groups"] = self.groups
        return state

    def merge(self, state: dict[str, Any]) -> None:
        """Add another report's :meth:`state` (units are merged in unit order, so the result is deterministic).

        Counters add up (counts belong there: two units of 3 DICOM series each are 6). A note that every unit gives
        the same value keeps it; otherwise the note becomes the list of the units' distinct values in unit order.
        Notes never add up, numbers included: a setting such as a chip size is the same in every unit.
        """
        self.inputs_seen += state["inputs_seen"]
        self.skipped.extend(state["skipped"])
        for name, values in state["counters"].items():
            self.counters[name].update(values)
        for key, value in state.get("notes", {}).items():
            if key not in self.notes or self.notes[key] == value:
                self.notes[key] = value
            else:
                merged = self.notes[key] if isinstance(self.notes[key], list) and key in self._listed else \
                    [self.notes[key]]
                if value not in merged:
                    merged.append(value)
                self.notes[key] = merged
                self._listed.add(key)

    def to_dict(self, samples_written: int) -> dict[str, Any]:
        return {
            "inputs_seen": self.inputs_seen,
            "samples_written": samples_written,
            "inputs_skipped": sum(1 for s in self.skipped if s["kind"] in ("input", "error")),
            "skipped": self.skipped,
            "counters": {k: dict(sorted(v.items())) for k, v in sorted(self.counters.items())},
            **({"notes": self.notes} if self.notes else {}),
        }


class Source(ABC):
    """Base class of ingest sources. Subclasses set ``domain``, ``name``, ``help`` and implement ``samples``.

    ``samples`` yields webdataset sample dicts (see :mod:`clipzoo.core.data.writer`), each with a
    ``json`` metadata member. A sample dropped by policy (e.g. a license filter) is recorded with
    ``report.skip(path, reason, kind="policy")`` so the manifest says why it is missing.
    """

    domain: ClassVar[str]
    name: ClassVar[str]
    help: ClassVar[str] = ""
    #: How image fields are encoded unless ``--image-format`` says otherwise: "png", "jpg", or None for the
    #: field's own extension (``image.jpg`` -> JPEG). Lossless PNG suits medical and scientific images.
    image_format: ClassVar[str | None] = None
    jpeg_quality: ClassVar[int] = 95
    #: Set when each file is read on its own: folders are expanded into these files and the files are grouped
    #: into work units. Unset, the inputs as named (files or folders) are grouped instead.
    input_suffixes: ClassVar[tuple[str, ...] | None] = None
    #: True when samples join several inputs (a cross-match, quarters of one star): all inputs form one unit.
    joins_inputs: ClassVar[bool] = False
    #: True when the source checks samples against each other across inputs (a duplicate article, a near-duplicate
    #: figure): such checks hold within one work unit, so without ``--unit-size`` the engine keeps units of
    #: ``UNIT_SIZE_MAX`` inputs for it instead of deriving smaller ones (parallelism then starts at two such units).
    checks_across_inputs: ClassVar[bool] = False
    #: True when the source opens fsspec/GDAL URLs itself (e.g. rasterio); otherwise the engine copies a URL
    #: input to a local cache first (:func:`clipzoo.core.io.stage_input`) and the source reads the copy.
    reads_urls: ClassVar[bool] = False
    #: Modules a worker process needs (the source's readers, e.g. ("pydicom", "PIL.PngImagePlugin")): the
    #: process pool's forkserver imports them once and workers fork with them loaded, instead of each worker
    #: paying the import on its first input.
    worker_imports: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the source's own options to ``clipzoo ingest DOMAIN SOURCE``'s parser."""

    def __init__(self, options: argparse.Namespace | None = None):
        # Every option the source declares is present: what is not given takes its declared default, so sources
        # read ``self.options.name`` and the defaults live only in ``add_arguments``.
        self.options = self.default_options(**vars(options or argparse.Namespace()))

    @classmethod
    def option_names(cls) -> list[str]:
        """The destinations of the options :meth:`add_arguments` declares, sorted."""
        return sorted(vars(cls.default_options()))

    @classmethod
    def default_options(cls, **overrides: Any) -> argparse.Namespace:
        """The options ``clipzoo ingest DOMAIN SOURCE`` would pass with no flags, then ``overrides``."""
        parser = argparse.ArgumentParser(add_help=False)
        cls.add_arguments(parser)
        options = parser.parse_args([])
        for key, value in overrides.items():
            setattr(options, key, value)
        return options

    @abstractmethod
    def samples(self, inputs: list[Path | str], report: IngestReport) -> Iterator[dict[str, Any]]:
        """Yield the samples read from ``inputs``; record what was seen and skipped on ``report``."""

    def units(self, inputs: list[Path | str], unit_size: int, report: IngestReport) -> list[list[Path | str]]:
        """Split ``inputs`` into work units, deterministically (the same inputs give the same units).

        Each unit is read by one call of :meth:`samples`, in its own process or Ray task, and writes its own
        shards; ``--resume`` redoes only units that did not finish. The default groups the files of
        :attr:`input_suffixes` (or the inputs as named) ``unit_size`` at a time, in the order given (folder
        contents sorted), and keeps everything in one unit when :attr:`joins_inputs`. A source whose samples
        come from big single inputs (a raster, a tarball) or from groups of files (a DICOM series) overrides
        this to make one unit per such input or group. Without ``--unit-size`` the engine asks for
        ``unit_size=1`` (the finest units) and packs them itself (:func:`clipzoo.core.ingest_engine.plan_units`).
        """
        if self.joins_inputs or not inputs:
            return [list(inputs)]
        items = list(expand_inputs(inputs, self.input_suffixes, report)) if self.input_suffixes else list(inputs)
        return [items[i:i + unit_size] for i in range(0, len(items), unit_size)]

    def record_path(self, path: str | Path) -> str:
        """How the engine names ``path`` (an input as given) in skips and errors it reports itself.

        Sources whose inputs may carry identifying folder names (clinical exports) override this to follow
        their own path policy (a relative or hashed form); the default is the path as given.
        """
        return str(path)

    def describe(self) -> dict[str, Any]:
        """Source settings recorded in the manifest (JSON-serialisable): the options, less private attributes a
        source keeps on them (a resolved ``--model``), which are no setting and would bloat every plan."""
        options = {k: v for k, v in vars(self.options).items() if not k.startswith("_")}
        return {"domain": self.domain, "name": self.name, "options": options}


def as_input(item: str | Path) -> str | Path:
    """Local paths become ``Path``; URLs (``s3://``, ``https://``), ``pipe:`` and GDAL ``/vsi...`` stay strings."""
    text = str(item)
    if "://" in text or text.startswith(("pipe:", "/vsi")):
        return text
    return Path(text)


#: A path in a message starts and ends next to a character that cannot continue a file name (a quote, space,
#: comma, ``/`` after a folder...); ``.`` counts as such (a sentence's full stop), at worst cutting ``x.dcm`` out of
#: ``x.dcm.bak``
_NAME_CHAR = r"[\w\-^~]"


def path_redactor(items: list, record_path: Callable[[Any], str]) -> Callable[[str], str]:
    """A function that takes the paths of ``items`` (inputs as a source reads them) out of a text: an exception's
    message or traceback.

    OSError, PIL and pydicom messages quote the path they were given, usually absolute, and clinical exports are
    often named after the patient (``/exports/SURNAME^GIVEN_19610704/IM0001.dcm``): a skip's path follows the
    source's path policy (``record_path``: below the named input, or hashed), and its reason must not carry the
    raw path back. Each item, as given, made absolute or with links resolved, becomes its ``record_path``; any
    folder above it, alone or at the start of another path, becomes ``<input folder>`` (which of them lie above
    the named input only the source knows, and ``hashed`` hides the ones below too). Hand-written (no library
    knows a source's path policy): one regular expression over the known paths, longest first so that a file
    wins over its folder.
    """
    names: dict[str, str] = {}
    folders: set[str] = set()
    for item in items:
        forms = {str(item)}
        if isinstance(item, Path):
            spellings = (item, item.absolute(), Path(os.path.realpath(item)))  # realpath: never raises (loops)
            forms |= {str(p) for p in spellings}
            folders.update(str(parent) for p in spellings for parent in p.parents if len(parent.parts) >= 2)
        names.update(dict.fromkeys(forms, record_path(item)))
    replace = {**dict.fromkeys(folders - names.keys(), "<input folder>"), **names}
    if not replace:
        return lambda text: text
    alternatives = "|".join(re.escape(k) for k in sorted(replace, key=len, reverse=True))
    pattern = re.compile(f"(?<!{_NAME_CHAR})(?:{alternatives})(?!{_NAME_CHAR})")
    return lambda text: pattern.sub(lambda m: replace[m.group(0)], text)


def redacted_traceback(exc: BaseException, redact: Callable[[str], str]) -> str:
    """``exc``'s traceback as text, passed through ``redact`` (from :func:`path_redactor`), for a DEBUG log line."""
    return redact("".join(traceback.format_exception(exc)))


def expand_inputs(inputs: Iterable[str | Path], suffixes: tuple[str, ...], report: IngestReport,
                  name: Callable[[Path], str] = str) -> Iterator[Path]:
    """Files named directly plus files below named folders whose name ends with one of ``suffixes``.

    Suffix matching is case-insensitive and sees compound suffixes (``.nii.gz``, ``.tar.gz``). A path
    that does not exist is skipped with that reason, named by ``name`` (a source's ``record_path``, so a missing
    file under a patient-named folder is reported as its samples would be named). Folder contents come in sorted
    order so runs are reproducible.
    """
    wanted = tuple(s.lower() for s in suffixes)
    for item in inputs:
        if isinstance(as_input(item), str):  # a URL or GDAL path: the source reads it as it is
            yield item
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(wanted))
            if not found:
                report.skip(name(path), f"folder holds no files ending in {', '.join(suffixes)}")
            yield from found
        elif path.is_file():
            yield path
        else:
            report.skip(name(path), "no such file or folder")


def run_ingest(
    source: Source,
    inputs: list[str | Path],
    out_dir: str | Path,
    *,
    max_count: int = 10_000,
    max_bytes: int = 1 << 30,
    prefix: str = "shard",
    progress: bool = True,
    workers: int = 1,
    engine: str = "process",
    ray_address: str | None = None,
    unit_size: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    image_format: str | None = None,
    jpeg_quality: int | None = None,
) -> dict[str, Any]:
    """Run ``source`` over ``inputs`` into shards under ``out_dir`` (a folder or fsspec URL); return the
    manifest's ingest part. See :func:`clipzoo.core.ingest_engine.run_units` for the keyword arguments."""
    from clipzoo.core.ingest_engine import EngineSettings, run_units

    settings = EngineSettings(
        prefix=prefix, max_count=max_count, max_bytes=max_bytes, unit_size=unit_size,
        image_format=image_format or source.image_format, jpeg_quality=jpeg_quality or source.jpeg_quality,
    )
    return run_units(source, [as_input(i) for i in inputs], out_dir, settings, workers=workers, engine=engine,
                     ray_address=ray_address, overwrite=overwrite, resume=resume, progress=progress)
