"""What the four biomed sources share: sample keys, how inputs are named, caption/label/template options.

``SourceNames`` is the privacy policy for input paths (``--source-paths``): samples, skips and the manifest never
carry the path above the folder or file the user named. The caption helpers turn ``--templates``/``--labels``
into the :mod:`~clipzoo.biomed.captions` and :mod:`~clipzoo.biomed.labels` objects the sources use.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from clipzoo.biomed.imaging import DEFAULT_MAX_SIDE
from clipzoo.core.data.writer import safe_key
from clipzoo.core.ingest import IngestError, IngestReport, expand_inputs, path_redactor, redacted_traceback

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")

#: What a worker of every biomed source imports on its first sample, for ``Source.worker_imports``: numpy (pixel
#: arrays; the writer's JSON of numpy values) and PIL with the plugins ``Image.open``/``save`` load first
#: (``Image.preinit``: BMP, GIF, JPEG, PPM, PNG; the writer encodes PNG or JPEG). Each source adds its readers.
IMAGE_WORKER_IMPORTS = ("numpy", "PIL.Image", "PIL.BmpImagePlugin", "PIL.GifImagePlugin", "PIL.JpegImagePlugin",
                        "PIL.PpmImagePlugin", "PIL.PngImagePlugin")


class KeyMaker:
    """Unique sample keys: a key already used in this run gets ``-2``, ``-3``... (the writer refuses duplicates)."""

    def __init__(self):
        self._used: set[str] = set()

    def __call__(self, *parts: object) -> str:
        key = safe_key(*parts)
        candidate, n = key, 1
        while candidate in self._used:
            n += 1
            candidate = f"{key}-{n}"
        self._used.add(candidate)
        return candidate


class SourceNames:
    """How samples and skips name an input file: never by the path above the folder or file the user named.

    An export folder is often named after the patient (``SURNAME^GIVEN_19610704/IM0001.dcm``); the absolute path
    would carry that name into every sample and the manifest. ``relative`` (default) keeps the path below the
    named input (a named file: its own name); ``hashed`` replaces that by a one-way 16-hex-digit hash, for when
    the folders below the input root are patient-named too.
    """

    MODES = ("relative", "hashed")

    def __init__(self, inputs: list[Path], mode: str):
        if mode not in self.MODES:
            raise IngestError(f"--source-paths {mode!r}: choose relative or hashed")
        self.roots = [Path(i) for i in inputs]
        self.mode = mode

    def relative(self, path: Path) -> str:
        path = Path(path)
        for root in self.roots:
            if path == root:
                return path.name
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
        return path.name

    def __call__(self, path: str | Path) -> str:
        rel = self.relative(Path(path))
        if self.mode == "hashed":
            return "sha256:" + hashlib.sha256(rel.encode("utf-8")).hexdigest()[:16]
        return rel

    def stem(self, path: str | Path) -> str:
        """A key part for ``path``: its file stem (relative mode) or its hash (hashed mode)."""
        name = self(path)
        if self.mode == "hashed":
            return name.split(":", 1)[1]
        base = PurePosixPath(name).name
        low = base.lower()
        for suffix in (".nii.gz", ".tar.gz"):
            if low.endswith(suffix):
                return base[: -len(suffix)]
        return PurePosixPath(base).stem or base


def unique_stems(files: list[Path], names: SourceNames, taken: set[tuple[str, str]] | None = None,
                 group: Callable[[Path], str] | None = None) -> dict[str, str]:
    """Each file's key stem (``names.stem``), distinct over ``files`` within its ``group`` (the key part before
    the stem, e.g. an image's label; one group without): a later file whose stem is taken (two ``T1w.nii.gz`` of
    two subjects) gets a short hash of its name as ``names`` gives it (below the named input, so the hash does not
    change with where the folder lives), and ``-2``, ``-3``... should even that repeat (hashed mode, one relative
    name under two named inputs). Files are taken in the order given; ``taken``: ``(group, stem)`` pairs already
    given to other files."""
    stems: dict[str, str] = {}
    used: set[tuple[str, str]] = set(taken or ())
    for path in files:
        scope = group(path) if group else ""
        stem = names.stem(path)
        if (scope, stem) in used:
            stem = f"{stem}-{hashlib.sha256(names.relative(path).encode('utf-8')).hexdigest()[:8]}"
        candidate, n = stem, 1
        while (scope, candidate) in used:
            n += 1
            candidate = f"{stem}-{n}"
        used.add((scope, candidate))
        stems[str(path)] = candidate
    return stems


class NamedByPolicy:
    """Mixin for sources with ``--source-paths``: inputs named as the user gave them, in samples and skips alike.

    A source with file-level work units plans them with :meth:`plan_files`: it records the inputs as named
    (``input_roots``) and a distinct key stem for every file (``key_stems``). Both travel to every unit's copy of
    the source, so a unit holding one file of a folder names it relative to that folder (``sub-01/anat/T1w.nii``,
    not ``T1w.nii``) and keys it as when the folder was read whole. ``samples`` called without planning (library
    use, tests) plans over its own inputs through the same helpers.
    """

    path_mode: str
    #: The inputs as the user named them, set when the units are planned: a unit's inputs are files, but samples
    #: and skips are named relative to the folder the user gave, as when that folder was read whole
    input_roots: list[Path] | None = None
    #: ``str(file) -> key stem``, distinct over every file of the run, set when the units are planned
    key_stems: dict[str, str] | None = None

    def names(self, inputs: list[Path]) -> SourceNames:
        """How this run names files: relative to the inputs as named at planning, else to ``inputs``."""
        return SourceNames(self.input_roots or [Path(i) for i in inputs], self.path_mode)

    def record_path(self, path: str | Path) -> str:
        return self.names([Path(path)])(path)

    def plan_files(self, inputs: list[Path | str], suffixes: tuple[str, ...], unit_size: int,
                   report: IngestReport, files: list[Path] | None = None,
                   group: Callable[[Path], str] | None = None) -> list[list[Path | str]]:
        """File-level work units: ``files`` (default: the files of ``suffixes`` below the inputs, folder contents
        sorted) ``unit_size`` at a time, with the inputs' names and every file's distinct key stem (within its
        ``group``, see :func:`unique_stems`) recorded."""
        self.input_roots = [Path(i) for i in inputs]
        if files is None:
            files = list(expand_inputs(inputs, suffixes, report, self.record_path))
        self.key_stems = unique_stems(files, self.names(inputs), group=group)
        return [files[i:i + unit_size] for i in range(0, len(files), unit_size)]

    def stems_for(self, files: list[Path], names: SourceNames,
                  group: Callable[[Path], str] | None = None) -> dict[str, str]:
        """The planned key stems, plus distinct stems for those of ``files`` not in the plan (all of them when
        ``samples`` is called without planning; a URL input read from its staged copy); ``group`` as planned."""
        planned = self.key_stems or {}
        missing = [p for p in files if str(p) not in planned]
        if not missing:
            return planned
        taken = {(group(Path(p)) if group else "", stem) for p, stem in planned.items()}
        return {**planned, **unique_stems(missing, names, taken, group)}


def add_privacy_arguments(parser: argparse.ArgumentParser, free_text_help: str | None) -> None:
    """``--source-paths``, and ``--free-text`` for readers whose files carry free-text fields (``free_text_help``)."""
    parser.add_argument("--source-paths", choices=SourceNames.MODES, default="relative",
                        help="how samples and the manifest name input files: the path below the named input "
                             "(relative, default) or a one-way hash of it (hashed: when folders are patient-named)")
    if free_text_help is not None:
        parser.add_argument("--free-text", action="store_true", help=free_text_help)


def redacted_message(exc: Exception, path: Path | str, names: SourceNames) -> str:
    """A reader error's message with ``path`` named as ``names`` names it: an OSError (and many library errors)
    quote the path they were given, usually absolute, which would carry a patient-named folder into a skip."""
    return path_redactor([Path(path)], names)(str(exc))


def skip_unexpected(report: IngestReport, path: Path | str, names: SourceNames, exc: Exception) -> None:
    """A reader bug or a library error nobody foresaw: one skip line, the traceback only at DEBUG (--verbose); in
    both, ``path`` is named as ``names`` names it."""
    redact = path_redactor([Path(path)], names)
    log.debug("unexpected error reading %s:\n%s", names(path), redacted_traceback(exc, redact))
    first = (redact(str(exc)).strip().splitlines() or [""])[0]
    report.skip(names(path), f"unexpected error ({type(exc).__name__}: {first})")


def csv_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def image_field_for(fmt: str) -> str:
    if fmt not in ("png", "jpg"):
        raise IngestError(f"--image-format must be png or jpg, not {fmt!r}")
    return f"image.{fmt}"


def caption_fields(captions: list[str]) -> dict[str, Any]:
    """``txt`` (first variant) and ``captions.json`` (all variants) for a sample."""
    return {"txt": captions[0], "captions.json": [{"text": c, "lang": "en"} for c in captions]} if captions else {}


def add_caption_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--templates", default=None,
                        help="extra caption templates: text (one per line) or JSON {modality: [templates]}")
    parser.add_argument("--templates-replace", action="store_true",
                        help="use only --templates, not the package's built-in templates")
    parser.add_argument("--labels", default=None, help="CSV with a path column and a label column")
    parser.add_argument("--path-column", default=None, help="CSV column holding image paths (auto-detected)")
    parser.add_argument("--label-column", default=None, help="CSV column holding labels, ';'-separated (auto-detected)")
    parser.add_argument("--max-captions", type=int, default=5, help="caption variants kept per sample")


def add_image_arguments(parser: argparse.ArgumentParser, image_format: str | None, downscale: bool = True) -> None:
    """``--image-format`` (default: the source's writer default, its ``image_format``) and ``--max-side``."""
    if downscale:
        parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                            help="downscale images whose longer side is larger")
    parser.add_argument("--image-format", default=image_format, help="png or jpg")


def caption_templates(options: argparse.Namespace):
    """The templates ``--templates``/``--templates-replace`` select (``options``: a source's filled options)."""
    from clipzoo.biomed.captions import CaptionTemplates

    try:
        return CaptionTemplates.from_file(options.templates, replace=options.templates_replace)
    except (OSError, ValueError) as exc:
        raise IngestError(f"--templates: {exc}") from exc


def label_table(options: argparse.Namespace):
    """The ``--labels`` CSV as a :class:`~clipzoo.biomed.labels.LabelTable`, or None without one."""
    from clipzoo.biomed.labels import LabelTable

    if not options.labels:
        return None
    try:
        return LabelTable(options.labels, options.path_column, options.label_column)
    except (OSError, ValueError) as exc:
        raise IngestError(f"--labels: {exc}") from exc
