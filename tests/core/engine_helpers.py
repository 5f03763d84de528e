"""Sources and helpers for the ingest engine tests: a gate that holds a run at a chosen point (so a test can
SIGKILL it there or start a second run against its lock), and a wrapper that makes one input raise.

Both wrap a real domain source and change nothing else: units, options and the manifest's source record are
the wrapped source's, so a run through the wrapper and one through the plain source share one plan and
``--resume`` can cross from one to the other. They live in a module (not in a test file) so worker processes
and ``python -c`` subprocesses can import them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Iterator

from clipzoo.core.ingest import IngestReport, Source

GATE_WAIT_S = 120  # a gated run gives up (and fails) after this; tests release or kill it long before


class _Wrapper(Source):
    domain = "test"
    name = "wrapper"

    def __init__(self, inner: Source):
        super().__init__(inner.options)
        self.inner = inner
        self.domain, self.name = inner.domain, inner.name
        self.image_format, self.jpeg_quality = inner.image_format, inner.jpeg_quality

    def units(self, inputs, unit_size, report):
        return self.inner.units(inputs, unit_size, report)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


class GatedSource(_Wrapper):
    """Yields the wrapped source's samples; in the unit holding an input whose path contains ``gate`` (or in
    every unit when ``gate`` is "*"), after ``after`` samples, touches ``marker`` and waits until ``release``
    exists."""

    def __init__(self, inner: Source, gate: str, marker: str | Path, release: str | Path, after: int = 0):
        super().__init__(inner)
        self.gate, self.marker, self.release, self.after = gate, str(marker), str(release), after

    def _wait(self) -> None:
        Path(self.marker).touch()
        for _ in range(int(GATE_WAIT_S / 0.05)):
            if Path(self.release).exists():
                return
            time.sleep(0.05)
        raise TimeoutError("gate never released")

    def samples(self, inputs, report: IngestReport) -> Iterator[dict[str, Any]]:
        gated = self.gate == "*" or any(self.gate in str(i) for i in inputs)
        n = 0
        if gated and self.after == 0:
            self._wait()
        for sample in self.inner.samples(inputs, report):
            yield sample
            n += 1
            if gated and n == self.after:
                self._wait()


class RaisingSource(_Wrapper):
    """The wrapped source, except that reading an input whose path contains ``bad`` raises after yielding that
    input's first sample (so the engine must also throw away what the failed read had already written)."""

    def __init__(self, inner: Source, bad: str):
        super().__init__(inner)
        self.bad = bad

    def samples(self, inputs, report: IngestReport) -> Iterator[dict[str, Any]]:
        if not any(self.bad in str(i) for i in inputs):
            yield from self.inner.samples(inputs, report)
            return
        for item in inputs:
            for i, sample in enumerate(self.inner.samples([item], report)):
                if self.bad in str(item) and i == 1:
                    raise RuntimeError(f"boom in {Path(str(item)).name}")
                yield sample
            if self.bad in str(item):
                raise RuntimeError(f"boom in {Path(str(item)).name}")


class PreloadProbe(_Wrapper):
    """The wrapped source, declaring a module no other part of a run imports (``wave``) as its worker import;
    each sample's json says whether that module was loaded when its unit began (by the pool's forkserver or
    the worker's start, as the engine promises, rather than during the unit)."""

    worker_imports = ("wave",)

    def samples(self, inputs, report: IngestReport) -> Iterator[dict[str, Any]]:
        loaded = {name: name in sys.modules for name in self.worker_imports}
        for sample in self.inner.samples(inputs, report):
            yield {**sample, "json": {**sample["json"], "preloaded": loaded}}
