"""The ingest contract every domain follows.

``clipzoo ingest DOMAIN SOURCE INPUT... --out DIR [source options]`` finds the registered
:class:`Source`, lets it add its options to the command's parser, runs it over the inputs and writes
what it yields through :class:`~clipzoo.core.data.writer.ShardWriter`. The source reports what it saw
and what it skipped on the :class:`IngestReport`; the report becomes ``manifest.json["ingest"]``.

A source never raises for one bad input: it calls ``report.skip(path, reason)`` and goes on. It
raises :class:`IngestError` only for a problem with the whole run (bad options). The command exits 0
when it ran to the end (skips included) and non-zero when nothing could be read.
"""

from __future__ import annotations

import argparse
import logging
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

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

    def input_seen(self, path: str | Path) -> None:
        self.inputs_seen += 1

    def skip(self, path: str | Path, reason: str, *, kind: str = "input") -> None:
        """Record an input (or an item inside one, e.g. a figure) that produced no sample.

        Every skip goes into the manifest; the log shows the first few of each kind, then a count.
        """
        self.skipped.append({"path": str(path), "reason": reason, "kind": kind})
        self.counters["skipped_by_kind"][kind] += 1
        n = self.counters["skipped_by_kind"][kind]
        if n <= LOGGED_SKIPS:
            log.warning("skipped %s: %s", path, reason)
        elif n == LOGGED_SKIPS + 1:
            log.warning("more %s skips follow; all are listed in manifest.json", kind)

    def count(self, counter: str, value: str, n: int = 1) -> None:
        self.counters[counter][str(value)] += n

    def to_dict(self, samples_written: int) -> dict[str, Any]:
        return {
            "inputs_seen": self.inputs_seen,
            "samples_written": samples_written,
            "inputs_skipped": sum(1 for s in self.skipped if s["kind"] == "input"),
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

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the source's own options to ``clipzoo ingest DOMAIN SOURCE``'s parser."""

    def __init__(self, options: argparse.Namespace):
        self.options = options

    @classmethod
    def default_options(cls, **overrides: Any) -> argparse.Namespace:
        """The options ``clipzoo ingest DOMAIN SOURCE`` would pass with no flags, then ``overrides``."""
        parser = argparse.ArgumentParser()
        cls.add_arguments(parser)
        options = parser.parse_args([])
        for key, value in overrides.items():
            setattr(options, key, value)
        return options

    @abstractmethod
    def samples(self, inputs: list[Path | str], report: IngestReport) -> Iterator[dict[str, Any]]:
        """Yield the samples read from ``inputs``; record what was seen and skipped on ``report``."""

    def describe(self) -> dict[str, Any]:
        """Source settings recorded in the manifest (JSON-serialisable)."""
        return {"domain": self.domain, "name": self.name, "options": dict(vars(self.options))}


def as_input(item: str | Path) -> str | Path:
    """Local paths become ``Path``; URLs (``s3://``, ``https://``), ``pipe:`` and GDAL ``/vsi...`` stay strings."""
    text = str(item)
    if "://" in text or text.startswith(("pipe:", "/vsi")):
        return text
    return Path(text)


def expand_inputs(inputs: Iterable[str | Path], suffixes: tuple[str, ...], report: IngestReport) -> Iterator[Path]:
    """Files named directly plus files below named folders whose name ends with one of ``suffixes``.

    Suffix matching is case-insensitive and sees compound suffixes (``.nii.gz``, ``.tar.gz``). A path
    that does not exist is skipped with that reason. Folder contents come in sorted order so runs are
    reproducible.
    """
    wanted = tuple(s.lower() for s in suffixes)
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(wanted))
            if not found:
                report.skip(path, f"folder holds no files ending in {', '.join(suffixes)}")
            yield from found
        elif path.is_file():
            yield path
        else:
            report.skip(path, "no such file or folder")


def run_ingest(
    source: Source,
    inputs: list[str | Path],
    out_dir: str | Path,
    *,
    max_count: int = 10_000,
    max_bytes: int = 1 << 30,
    prefix: str = "shard",
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``source`` over ``inputs`` into shards under ``out_dir``; return the manifest's ingest part."""
    from tqdm import tqdm

    from clipzoo.core.data.writer import ShardWriter

    report = IngestReport()
    writer = ShardWriter(out_dir, prefix=prefix, max_count=max_count, max_bytes=max_bytes, source=source.describe())
    with writer:
        bar = tqdm(desc=f"ingest {source.domain} {source.name}", unit="sample", disable=not progress)
        for sample in source.samples([as_input(i) for i in inputs], report):
            writer.write(sample)
            bar.update(1)
        bar.close()
        summary = report.to_dict(writer.samples_written)
        writer.manifest.ingest = summary
    return summary
