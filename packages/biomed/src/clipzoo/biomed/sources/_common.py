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
from typing import Any

from clipzoo.biomed.imaging import DEFAULT_MAX_SIDE
from clipzoo.core.data.writer import safe_key
from clipzoo.core.ingest import IngestError, IngestReport

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


class NamedByPolicy:
    """Mixin for sources with ``--source-paths``: the engine's own skips name an input the same way samples do."""

    path_mode: str

    def record_path(self, path: str | Path) -> str:
        return SourceNames([Path(path)], self.path_mode)(path)


def add_privacy_arguments(parser: argparse.ArgumentParser, free_text_help: str | None) -> None:
    """``--source-paths``, and ``--free-text`` for readers whose files carry free-text fields (``free_text_help``)."""
    parser.add_argument("--source-paths", choices=SourceNames.MODES, default="relative",
                        help="how samples and the manifest name input files: the path below the named input "
                             "(relative, default) or a one-way hash of it (hashed: when folders are patient-named)")
    if free_text_help is not None:
        parser.add_argument("--free-text", action="store_true", help=free_text_help)


def skip_unexpected(report: IngestReport, where: str, exc: Exception) -> None:
    """A reader bug or a library error nobody foresaw: one skip line, the traceback only at DEBUG (--verbose)."""
    log.debug("unexpected error reading %s", where, exc_info=True)
    first = (str(exc).strip().splitlines() or [""])[0]
    report.skip(where, f"unexpected error ({type(exc).__name__}: {first})")


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
