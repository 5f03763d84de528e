"""The biomed ingest sources: ``clipzoo ingest biomed jats|dicom|nifti|images``.

Each source adapts a reader (:mod:`~clipzoo.biomed.jats`, :mod:`~clipzoo.biomed.dicom`,
:mod:`~clipzoo.biomed.nifti`, :mod:`~clipzoo.biomed.imaging`) to webdataset samples following the contract in
``docs/ARCHITECTURE.md``: one bad input is a ``report.skip(path, reason)``, never an exception.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from clipzoo.core.data.writer import safe_key
from clipzoo.core.ingest import IngestError, IngestReport, Source, expand_inputs

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")


class _KeyMaker:
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


class _SourceNames:
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


class _NamedByPolicy:
    """Mixin for sources with ``--source-paths``: the engine's own skips name an input the same way samples do."""

    path_mode: str

    def record_path(self, path: str | Path) -> str:
        return _SourceNames([Path(path)], self.path_mode)(path)


def _add_privacy_arguments(parser: argparse.ArgumentParser, free_text_help: str) -> None:
    parser.add_argument("--source-paths", choices=_SourceNames.MODES, default="relative",
                        help="how samples and the manifest name input files: the path below the named input "
                             "(relative, default) or a one-way hash of it (hashed: when folders are patient-named)")
    parser.add_argument("--free-text", action="store_true", help=free_text_help)


def _unexpected(report: IngestReport, where: str, exc: Exception) -> None:
    """A reader bug or a library error nobody foresaw: one skip line, the traceback only at DEBUG (--verbose)."""
    log.debug("unexpected error reading %s", where, exc_info=True)
    first = (str(exc).strip().splitlines() or [""])[0]
    report.skip(where, f"unexpected error ({type(exc).__name__}: {first})")


def _csv_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _image_field(fmt: str) -> str:
    if fmt not in ("png", "jpg"):
        raise IngestError(f"--image-format must be png or jpg, not {fmt!r}")
    return f"image.{fmt}"


def _caption_fields(captions: list[str]) -> dict[str, Any]:
    """``txt`` (first variant) and ``captions.json`` (all variants) for a sample."""
    return {"txt": captions[0], "captions.json": [{"text": c, "lang": "en"} for c in captions]} if captions else {}


def _add_caption_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--templates", default=None,
                        help="extra caption templates: text (one per line) or JSON {modality: [templates]}")
    parser.add_argument("--templates-replace", action="store_true",
                        help="use only --templates, not the package's built-in templates")
    parser.add_argument("--labels", default=None, help="CSV with a path column and a label column")
    parser.add_argument("--path-column", default=None, help="CSV column holding image paths (auto-detected)")
    parser.add_argument("--label-column", default=None, help="CSV column holding labels, ';'-separated (auto-detected)")
    parser.add_argument("--max-captions", type=int, default=5, help="caption variants kept per sample")


def _templates(options):
    from clipzoo.biomed.captions import CaptionTemplates

    try:
        return CaptionTemplates.from_file(getattr(options, "templates", None),
                                          replace=getattr(options, "templates_replace", False))
    except (OSError, ValueError) as exc:
        raise IngestError(f"--templates: {exc}") from exc


def _label_table(options):
    from clipzoo.biomed.labels import LabelTable

    if not getattr(options, "labels", None):
        return None
    try:
        return LabelTable(options.labels, getattr(options, "path_column", None), getattr(options, "label_column", None))
    except (OSError, ValueError) as exc:
        raise IngestError(f"--labels: {exc}") from exc


# ======================================================================================================
# JATS figure-caption pairs
# ======================================================================================================
@dataclass
class _Package:
    """One article's XML plus the files next to it (a folder on disk or the same folder of an archive)."""

    source: str  # what the manifest names: a path, or "archive.tar.gz::member"
    xml: Callable[[], bytes | Path]
    names: dict[str, str]  # lower-cased file name -> member/path key
    open_file: Callable[[str], bytes | Path]
    license: str | None = None  # from a PMC file list: overrides the XML's license statement
    license_text: str | None = None


PMC_TREES = ("oa_comm", "oa_noncomm")


def _is_pmc_mirror(path: Path) -> bool:
    """A folder laid out like the PMC Cloud Service (``oa_comm/`` and/or ``oa_noncomm/`` trees with file lists)."""
    return path.is_dir() and any((path / tree).is_dir() for tree in PMC_TREES)


def _unsafe_member_reason(member: tarfile.TarInfo) -> str | None:
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in parts:
        return "'..' in path"
    if member.issym() or member.islnk():
        return "link member"
    if not (member.isfile() or member.isdir()):
        return "device or special file"
    return None


class JatsSource(Source):
    """Figure-caption pairs from PMC/JATS articles (BIOMEDICA-style).

    Inputs: .nxml/.xml articles, article package folders, PMC OA .tar.gz packages (streamed, never extracted;
    members with absolute or '..' paths refused) and folders of them, and mirrors of the PMC Cloud Service
    layout (a folder with ``oa_comm/``/``oa_noncomm/`` trees: articles and licenses from their CSV file lists). One sample per <fig> (not tables,
    inline graphics, formulae or supplementary material): image.jpg (RGB, downscaled to --max-side with the
    original size in the metadata), txt (caption title + paragraphs) and json (PMCID, PMID, DOI, title, journal,
    year, license). The manifest counts articles with/without figures and articles per license.
    """

    domain = "biomed"
    name = "jats"
    image_format = "jpg"  # writer default (--image-format overrides): figures are photos and charts
    help = ("PMC/JATS figure-caption pairs from .nxml/.xml files, article folders, PMC OA .tar.gz packages and "
            "PMC Cloud Service mirrors (oa_comm/, oa_noncomm/ with file lists)")

    XML_SUFFIXES = (".nxml", ".xml")
    ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--licenses", default=None,
                            help="comma list of license families allowed into the shards, e.g. cc-by,cc0,pd "
                                 "(default: all, including 'unknown')")
        parser.add_argument("--missing-images", choices=("skip", "caption-only"), default="skip",
                            help="a figure whose image is not in the package: skip it (default) or keep its caption")
        parser.add_argument("--max-side", type=int, default=1024, help="downscale images whose longer side is larger")
        parser.add_argument("--image-format", default="jpg", help="png or jpg")
        parser.add_argument("--near-duplicates", choices=("drop", "keep", "off"), default="drop",
                            help="perceptual-hash near-duplicate images across the run: drop (default), keep "
                                 "(flagged in metadata) or off (no hashing)")
        parser.add_argument("--phash-distance", type=int, default=4,
                            help="max pHash Hamming distance of a near duplicate")
        parser.add_argument("--max-member-mb", type=float, default=256.0,
                            help="archive members larger than this are not read")

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.key = _KeyMaker()
        from clipzoo.biomed.imaging import NearDuplicateIndex

        self.allowed = set(_csv_list(getattr(options, "licenses", None))) or None
        self.image_field = _image_field(getattr(options, "image_format", "jpg"))
        self.missing = getattr(options, "missing_images", "skip")
        self.max_side = getattr(options, "max_side", 1024)
        self.duplicates = getattr(options, "near_duplicates", "drop")
        self.index = NearDuplicateIndex(getattr(options, "phash_distance", 4)) if self.duplicates != "off" else None
        self.max_member = int(getattr(options, "max_member_mb", 256.0) * 1024 * 1024)
        self._seen_articles: dict[str, str] = {}
        self._folder_names: dict[Path, dict[str, str]] = {}

    # -- inputs -> packages ---------------------------------------------------------------------------
    def _folder_index(self, folder: Path) -> dict[str, str]:
        if folder not in self._folder_names:
            self._folder_names[folder] = {p.name.lower(): str(p) for p in folder.iterdir() if p.is_file()}
        return self._folder_names[folder]

    def _archive_packages(self, path: Path, report: IngestReport) -> Iterator[_Package]:
        """Stream an archive once, never extracting to disk.

        Members are grouped by their top-level folder (a PMC OA package is ``PMCxxxx/...``); a group's XML and
        image members are held in memory until the stream moves on to another folder, then its articles are
        handed on and the group is freed. Memory is thus bounded by the largest package, not the archive.
        """
        from clipzoo.biomed.jats import IMAGE_EXTENSIONS

        group: dict[str, bytes] = {}
        group_folder: str | None = None
        articles = 0

        def flush() -> Iterator[_Package]:
            members = dict(group)
            names = {PurePosixPath(n).name.lower(): n for n in members}
            for name in sorted(n for n in members if n.lower().endswith(self.XML_SUFFIXES)):
                yield _Package(source=f"{path}::{name}", xml=lambda n=name: members[n], names=names,
                               open_file=lambda n: members[n])
            group.clear()

        try:
            with tarfile.open(str(path), "r|*") as tar:
                for member in tar:
                    reason = _unsafe_member_reason(member)
                    if reason:
                        report.skip(f"{path}::{member.name}", f"refused archive member: {reason}", kind="member")
                        continue
                    if not member.isfile():
                        continue
                    low = member.name.lower()
                    if not low.endswith(self.XML_SUFFIXES + IMAGE_EXTENSIONS):
                        continue
                    if member.size > self.max_member:
                        report.skip(f"{path}::{member.name}",
                                    f"member larger than --max-member-mb ({member.size} bytes)", kind="member")
                        continue
                    parts = PurePosixPath(member.name).parts
                    folder = parts[0] if len(parts) > 1 else ""
                    if folder != group_folder and group:
                        for package in flush():
                            articles += 1
                            yield package
                    group_folder = folder
                    fh = tar.extractfile(member)
                    group[member.name] = fh.read() if fh is not None else b""
        except (tarfile.TarError, EOFError, OSError) as exc:
            report.skip(path, f"truncated or corrupt archive ({type(exc).__name__}: {exc}); "
                              f"{articles} article(s) read before the damage were kept")
            return
        for package in flush():
            articles += 1
            yield package
        if articles == 0:
            report.skip(path, "archive holds no .nxml/.xml article")

    def _pmc_packages(self, root: Path, report: IngestReport) -> Iterator[_Package]:
        """Articles of a PMC Cloud Service mirror, as its CSV file lists name them.

        Each tree (``oa_comm/``, ``oa_noncomm/``) has ``*.filelist.csv`` lists (e.g.
        ``oa_comm/xml/metadata/csv/oa_comm.filelist.csv``) with one row per article: ``Key`` (the XML's path
        below the mirror root), ``AccessionID``, ``PMID``, ``License`` and ``Retracted``. The list's license is
        the article's (PMC's own classification, more reliable than parsing the statement); retracted articles
        are skipped. An article's media are the image files beside its XML, and those in a folder named after
        the XML (``PMC123/`` next to ``PMC123.xml``), where the mirror holds them.
        """
        import csv

        from clipzoo.biomed.jats import license_family

        lists = sorted(p for tree in PMC_TREES if (root / tree).is_dir()
                       for p in (root / tree).rglob("*.filelist.csv"))
        if not lists:
            report.skip(root, "PMC mirror without *.filelist.csv lists (expected e.g. "
                              "oa_comm/xml/metadata/csv/oa_comm.filelist.csv)")
            return
        for listing in lists:
            try:
                with open(listing, newline="", encoding="utf-8") as fh:
                    rows = list(csv.DictReader(fh))
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                report.skip(listing, f"unreadable file list ({type(exc).__name__}: {exc})")
                continue
            if rows and "Key" not in rows[0]:
                report.skip(listing, f"file list has no Key column (columns: {', '.join(rows[0])})")
                continue
            for row in rows:
                key = (row.get("Key") or "").strip()
                if not key.lower().endswith(self.XML_SUFFIXES):
                    continue
                where = f"{root.name}/{key}"
                report.input_seen(where)
                xml = (root / key).resolve()
                if not xml.is_relative_to(root.resolve()):
                    report.skip(where, "file list key points outside the mirror", kind="input")
                    continue
                if not xml.is_file():
                    report.skip(where, "listed in the file list but not in the mirror")
                    continue
                if (row.get("Retracted") or "").strip().lower() in ("yes", "y", "true", "1"):
                    report.skip(where, "retracted (file list)", kind="policy")
                    report.count("articles", "retracted")
                    continue
                names = dict(self._folder_index(xml.parent))
                media = xml.parent / xml.name.rsplit(".", 1)[0]
                if media.is_dir():
                    names.update(self._folder_index(media))
                text = (row.get("License") or "").strip()
                yield _Package(source=where, xml=lambda p=xml: p, names=names, open_file=lambda n: Path(n),
                               license=license_family(None, text, text) if text else None, license_text=text)

    def _packages(self, inputs: list[Path], report: IngestReport) -> Iterator[_Package]:
        mirrors = [Path(i) for i in inputs if _is_pmc_mirror(Path(i))]
        for root in mirrors:
            yield from self._pmc_packages(root, report)
        inputs = [i for i in inputs if Path(i) not in mirrors]
        if not inputs:
            return
        for path in expand_inputs(inputs, self.XML_SUFFIXES + self.ARCHIVE_SUFFIXES, report):
            report.input_seen(path)
            if path.name.lower().endswith(self.ARCHIVE_SUFFIXES):
                yield from self._archive_packages(path, report)
            else:
                yield _Package(source=str(path), xml=lambda p=path: p, names=self._folder_index(path.parent),
                               open_file=lambda n: Path(n))

    # -- packages -> samples --------------------------------------------------------------------------
    def samples(self, inputs: list[Path], report: IngestReport) -> Iterator[dict[str, Any]]:
        from clipzoo.biomed.jats import JatsError, parse_article

        for package in self._packages(inputs, report):
            try:
                article = parse_article(package.xml())
            except (JatsError, OSError) as exc:
                report.skip(package.source, str(exc))
                continue
            ident = article.ident or Path(package.source.split("::")[-1]).stem
            if ident in self._seen_articles:
                report.skip(package.source, f"article {ident} already ingested from {self._seen_articles[ident]}",
                            kind="duplicate")
                continue
            self._seen_articles[ident] = package.source
            if package.license is not None:  # PMC's file list classifies the license: it wins over the statement
                if package.license != article.license:
                    article.license_url = None
                article.license = package.license
                report.count("license_source", "pmc-filelist")
            report.count("license", article.license)
            if self.allowed is not None and article.license not in self.allowed:
                allowed = ",".join(sorted(self.allowed))
                report.skip(package.source, f"license {article.license!r} not in --licenses {allowed}", kind="policy")
                report.count("articles", "excluded_by_license")
                continue
            if not article.figures:
                report.count("articles", "without_figures")
                continue
            report.count("articles", "with_figures")
            yield from self._figure_samples(package, article, ident, report)

    def _figure_samples(self, package: _Package, article, ident: str, report: IngestReport) -> Iterator[dict[str, Any]]:
        from clipzoo.biomed.imaging import ImageReadError, load_rgb
        from clipzoo.biomed.jats import resolve_graphic

        base = article.metadata()
        for fig in article.figures:
            report.count("figures", "found")
            where = f"{package.source}#{fig.fig_id}"
            key = self.key(ident, fig.fig_id)
            meta = {"source": package.source, **base, "fig_id": fig.fig_id, "label": fig.label, "graphic": fig.href}
            if not fig.caption:
                report.skip(where, "figure has no caption text", kind="figure")
                continue
            member = resolve_graphic(fig.href, package.names) if fig.href else None
            sample: dict[str, Any] = {"__key__": key, "txt": fig.caption}
            if member is None:
                reason = "<fig> has no <graphic>"
                if fig.href:
                    reason = (f"image {fig.href!r} not found in the package "
                              "(tried the name and .jpg/.png/.tif/.gif, any case)")
                if self.missing != "caption-only":
                    report.skip(where, reason, kind="figure")
                    continue
                meta.update({"image_file": None, "caption_only": True, "missing_image": reason})
                report.count("figures", "caption_only")
                sample["json"] = meta
                report.count("samples_by_license", article.license)
                yield sample
                continue
            try:
                loaded = load_rgb(package.open_file(member), max_side=self.max_side)
            except (ImageReadError, OSError) as exc:
                report.skip(where, f"{PurePosixPath(member).name}: {exc}", kind="figure")
                continue
            meta.update({"image_file": PurePosixPath(member).name, "caption_only": False, **loaded.metadata()})
            if self.index is not None:
                phash, hit = self.index.check(loaded.image, key)
                meta["phash"] = phash
                if hit is not None:
                    report.count("figures", "near_duplicates")
                    if self.duplicates == "drop":
                        report.skip(where, f"near-duplicate image of {hit[0]} (pHash distance {hit[1]})",
                                    kind="duplicate")
                        continue
                    meta["near_duplicate_of"] = hit[0]
                    meta["near_duplicate_distance"] = hit[1]
            sample[self.image_field] = loaded.image
            sample["json"] = meta
            report.count("figures", "with_image")
            report.count("samples_by_license", article.license)
            yield sample


# ======================================================================================================
# DICOM
# ======================================================================================================
class DicomSource(_NamedByPolicy, Source):
    """DICOM files or folders -> one sample per slice/frame, display-ready (grey stays single-channel).

    Modality LUT, VOI LUT or window (CT presets when the file has none), MONOCHROME1 inverted, palette and YBR
    to RGB, compressed syntaxes through pydicom's plugins. Slices are grouped by SeriesInstanceUID and ordered
    along the slice normal; only non-identifying tags reach the metadata (free-text tags with --free-text),
    files are named relative to the input (or hashed), and images flagged BurnedInAnnotation=YES are skipped
    unless --keep-burned-in. Captions from the modality's templates (labels from --labels CSV when given).
    """

    domain = "biomed"
    name = "dicom"
    image_format = "png"  # writer default (--image-format overrides): grey slices, lossless, one channel
    help = "DICOM slices/frames (series grouped and ordered along the slice normal) with template captions"

    SUFFIXES = (".dcm", ".dicom", ".ima")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--window", default=None,
                            help="CENTRE,WIDTH or a CT preset (soft-tissue, lung, bone, brain, mediastinum, liver); "
                                 "default: the file's VOI LUT/window, else the --ct-window preset for CT, "
                                 "else min..max")
        parser.add_argument("--ct-window", default="soft-tissue", help="CT preset used when a CT file names no window")
        parser.add_argument("--slices", choices=("all", "middle"), default="all",
                            help="every slice of a series, or only its middle slice along the normal")
        parser.add_argument("--all-files", action="store_true",
                            help="inside folders read every file, not only *.dcm/*.dicom/*.ima (non-DICOM are skipped)")
        parser.add_argument("--image-format", default="png", help="png or jpg")
        parser.add_argument("--max-side", type=int, default=1024, help="downscale images whose longer side is larger")
        parser.add_argument("--keep-burned-in", action="store_true",
                            help="keep images whose BurnedInAnnotation is YES (text such as names in the pixels); "
                                 "default: skip and count them")
        _add_privacy_arguments(parser, "record free-text tags (SeriesDescription, StudyDescription, ImageComments, "
                                       "ProtocolName, ...) under free_text; off by default: they often name the "
                                       "patient")
        _add_caption_arguments(parser)

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.key = _KeyMaker()
        from clipzoo.biomed.dicom import CT_WINDOWS, parse_window

        try:
            self.window = parse_window(getattr(options, "window", None))
        except ValueError as exc:
            raise IngestError(f"--window: {exc}") from exc
        self.ct_window = getattr(options, "ct_window", "soft-tissue")
        if self.ct_window not in CT_WINDOWS:
            raise IngestError(f"--ct-window {self.ct_window!r}: choose one of {', '.join(CT_WINDOWS)}")
        self.image_field = _image_field(getattr(options, "image_format", "png"))
        self.max_side = getattr(options, "max_side", 1024)
        self.templates = _templates(options)
        self.labels = _label_table(options)
        self.max_captions = getattr(options, "max_captions", 5)
        self.free_text = bool(getattr(options, "free_text", False))
        self.keep_burned_in = bool(getattr(options, "keep_burned_in", False))
        self.path_mode = getattr(options, "source_paths", "relative")
        _SourceNames([], self.path_mode)  # refuse a bad mode before anything is read

    def _files(self, inputs: list[Path], report: IngestReport) -> Iterator[Path]:
        if not getattr(self.options, "all_files", False):
            yield from expand_inputs(inputs, self.SUFFIXES, report)
            return
        for item in inputs:
            path = Path(item)
            if path.is_dir():
                yield from sorted(p for p in path.rglob("*") if p.is_file())
            elif path.is_file():
                yield path
            else:
                report.skip(path, "no such file or folder")

    def _headers(self, inputs: list[Path], report: IngestReport, names: _SourceNames):
        from clipzoo.biomed.dicom import DicomReadError, read_header

        headers = []
        for path in self._files(inputs, report):
            report.input_seen(path)
            try:
                header = read_header(path, free_text=self.free_text)
            except DicomReadError as exc:
                report.skip(names(path), str(exc))
                report.count("skip_reasons", exc.kind)
                continue
            except Exception as exc:
                _unexpected(report, names(path), exc)
                continue
            if header.meta.get("burned_in_annotation") == "YES" and not self.keep_burned_in:
                report.skip(names(path), "burned-in annotation: BurnedInAnnotation is YES (text in the pixels may "
                                         "identify the patient); --keep-burned-in keeps such images", kind="policy")
                report.count("skip_reasons", "burned-in")
                continue
            headers.append(header)
        return headers

    def samples(self, inputs: list[Path], report: IngestReport) -> Iterator[dict[str, Any]]:
        from PIL import Image
        from tqdm import tqdm

        from clipzoo.biomed.dicom import DicomReadError, group_series, read_dicom
        from clipzoo.biomed.quiet import quiet_library_logs

        quiet_library_logs()
        names = _SourceNames(inputs, self.path_mode)
        series = group_series(self._headers(inputs, report, names))
        report.notes["series"] = len(series)
        report.notes["source_paths"] = self.path_mode
        total = sum(len(v) if self.options.slices == "all" else 1 for v in series.values())
        bar = tqdm(total=total, desc="dicom slices", unit="file", disable=total < 50, leave=False)
        for series_key, items in series.items():
            chosen = range(len(items)) if self.options.slices == "all" else [len(items) // 2]
            for index in chosen:
                header = items[index]
                bar.update(1)
                source = names(header.path)
                try:
                    frames, meta = read_dicom(header.path, window=self.window, ct_window=self.ct_window,
                                              free_text=self.free_text, header=header)
                except DicomReadError as exc:
                    report.skip(source, str(exc))
                    report.count("skip_reasons", exc.kind)
                    continue
                except Exception as exc:
                    _unexpected(report, source, exc)
                    continue
                report.count("modality", meta.get("modality", "unknown"))
                labels = self.labels.labels_for(header.path) if self.labels else None
                captions = self.templates.captions(
                    meta.get("modality", ""), labels, max_variants=self.max_captions,
                    body_part=str(meta.get("body_part", "")).lower() or None, plane=meta.get("plane"),
                )
                for f, frame in enumerate(frames):
                    image = Image.fromarray(frame)  # [rows, columns] -> "L", [rows, columns, 3] -> "RGB"
                    original = image.size
                    if self.max_side and max(image.size) > self.max_side:
                        image.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
                    sample_meta = {
                        "source": source, **meta, "labels": labels or [],
                        "series_index": index, "series_length": len(items), "frame": f,
                        "position_along_normal": header.position,
                        "width": image.size[0], "height": image.size[1],
                        "original_width": original[0], "original_height": original[1],
                        "channels": len(image.getbands()),
                        "axes": "rows,columns (pydicom order)",
                    }
                    yield {"__key__": self.key(series_key, f"{index:05d}", f"{f:04d}"), self.image_field: image,
                           **_caption_fields(captions), "json": sample_meta}
        bar.close()


# ======================================================================================================
# NIfTI
# ======================================================================================================
class NiftiSource(_NamedByPolicy, Source):
    """NIfTI 3-D/4-D volumes via MONAI (LoadImage, Orientation RAS, optional Spacing, intensity scaling).

    Emits slices in the chosen planes (all, middle or every Nth) and/or per-volume projections (mip, mean),
    in radiological display; 4-D files keep one frame or the mean. The choices are recorded in every sample's
    metadata and in the manifest notes.
    """

    domain = "biomed"
    name = "nifti"
    image_format = "png"  # writer default (--image-format overrides): grey slices, lossless, one channel
    help = "NIfTI 3-D/4-D volumes via MONAI (RAS, optional resampling): slices in chosen planes and/or projections"

    SUFFIXES = (".nii", ".nii.gz", ".hdr")  # .hdr: NIfTI-1/2 or Analyze header of a .hdr/.img pair

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--planes", default="axial", help="comma list of axial, coronal, sagittal")
        parser.add_argument("--slices", default="all",
                            help="'all', 'middle', 'none' (views only) or an integer step (every Nth slice)")
        parser.add_argument("--views", default="", help="comma list of per-volume 2-D views: mip, mean")
        parser.add_argument("--frame", default="0", help="4-D volumes: frame index to keep, or 'mean'")
        parser.add_argument("--spacing", default=None, help="resample to this voxel size in mm: S or SX,SY,SZ")
        parser.add_argument("--window", default=None,
                            help="CENTRE,WIDTH or CT preset for intensity scaling (default: 0.5-99.5 percentiles)")
        parser.add_argument("--modality", default=None, help="ct, mri, ... (captions; NIfTI does not record it)")
        parser.add_argument("--body-part", default=None, help="body part for captions, e.g. brain")
        parser.add_argument("--keep-empty", action="store_true", help="keep constant (empty) slices")
        parser.add_argument("--image-format", default="png", help="png or jpg")
        _add_privacy_arguments(parser, "record the header's free-text fields (descrip, aux_file, intent_name) "
                                       "under free_text; off by default: they may name the patient")
        _add_caption_arguments(parser)

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.key = _KeyMaker()
        from clipzoo.biomed.dicom import CT_WINDOWS, parse_window
        from clipzoo.biomed.nifti import PLANES

        self.planes = _csv_list(getattr(options, "planes", "axial"))
        bad = [p for p in self.planes if p not in PLANES]
        if bad or not self.planes:
            raise IngestError(f"--planes {options.planes!r}: choose from {', '.join(PLANES)}")
        self.views = _csv_list(getattr(options, "views", ""))
        if any(v not in ("mip", "mean") for v in self.views):
            raise IngestError(f"--views {options.views!r}: choose from mip, mean")
        slices = str(getattr(options, "slices", "all"))
        if slices not in ("all", "middle", "none") and not (slices.isdigit() and int(slices) > 0):
            raise IngestError(f"--slices {slices!r}: use all, middle, none or a positive step")
        self.slices = slices
        frame = str(getattr(options, "frame", "0"))
        if frame != "mean" and not frame.lstrip("-").isdigit():
            raise IngestError(f"--frame {frame!r}: an integer index or 'mean'")
        self.frame: int | str = frame if frame == "mean" else int(frame)
        spacing = getattr(options, "spacing", None)
        try:
            values = [float(v) for v in spacing.split(",")] if spacing else None
        except ValueError:
            raise IngestError(f"--spacing {spacing!r}: one number or three, in mm") from None
        if values is not None and len(values) not in (1, 3):
            raise IngestError(f"--spacing {spacing!r}: one number or three, in mm")
        self.spacing = None if values is None else tuple(values * 3 if len(values) == 1 else values)
        try:
            window = parse_window(getattr(options, "window", None))
        except ValueError as exc:
            raise IngestError(f"--window: {exc}") from exc
        self.window = CT_WINDOWS[window] if isinstance(window, str) else window
        self.image_field = _image_field(getattr(options, "image_format", "png"))
        self.templates = _templates(options)
        self.labels = _label_table(options)
        self.max_captions = getattr(options, "max_captions", 5)
        self.free_text = bool(getattr(options, "free_text", False))
        self.path_mode = getattr(options, "source_paths", "relative")
        _SourceNames([], self.path_mode)

    def _indices(self, n: int) -> list[int]:
        if self.slices == "none":
            return []
        if self.slices == "middle":
            return [n // 2]
        step = 1 if self.slices == "all" else int(self.slices)
        return list(range(0, n, step))

    def samples(self, inputs: list[Path], report: IngestReport) -> Iterator[dict[str, Any]]:
        import numpy as np
        from PIL import Image

        from clipzoo.biomed.nifti import NiftiReadError, extract_slice, load_volume, project, scale_intensity

        names = _SourceNames(inputs, self.path_mode)
        modality = getattr(self.options, "modality", None)
        body_part = getattr(self.options, "body_part", None)
        choice = {"planes": self.planes, "slices": self.slices, "views": self.views, "frame": self.frame,
                  "spacing": list(self.spacing) if self.spacing else None,
                  "intensity": {"window": list(self.window)} if self.window else {"percentiles": [0.5, 99.5]},
                  "display": "radiological; rows,columns"}
        report.notes["nifti"] = choice
        report.notes["source_paths"] = self.path_mode
        for path in expand_inputs(inputs, self.SUFFIXES, report):
            report.input_seen(path)
            source = names(path)
            try:
                volume = load_volume(path, spacing=self.spacing, frame=self.frame, header_text=self.free_text)
                unit = scale_intensity(volume.data, window=self.window)
            except NiftiReadError as exc:
                report.skip(source, str(exc))
                report.count("skip_reasons", exc.kind)
                continue
            except Exception as exc:
                _unexpected(report, source, exc)
                continue
            labels = self.labels.labels_for(path) if self.labels else None
            stem = names.stem(path)
            items: list[tuple[str, str, int | None, Any]] = []
            for plane in self.planes:
                n = unit.shape[{"sagittal": 0, "coronal": 1, "axial": 2}[plane]]
                items += [("slice", plane, i, None) for i in self._indices(n)]
                items += [(view, plane, None, None) for view in self.views]
            for kind, plane, index, _ in items:
                arr = extract_slice(unit, plane, index) if kind == "slice" else project(unit, plane, kind)
                if kind == "slice" and not getattr(self.options, "keep_empty", False) and float(np.ptp(arr)) < 1e-6:
                    report.count("empty_slices", plane)
                    continue
                grey = np.rint(np.nan_to_num(arr, nan=0.0) * 255.0).astype(np.uint8)
                image = Image.fromarray(grey, "L")  # single-channel: CT/MR slices are grey
                captions = self.templates.captions(modality or "generic", labels, max_variants=self.max_captions,
                                                   plane=plane, body_part=body_part)
                meta = {"source": source, **volume.meta, "modality": modality, "body_part": body_part,
                        "labels": labels or [], "plane": plane, "kind": kind, "slice_index": index,
                        "num_slices": int(unit.shape[{"sagittal": 0, "coronal": 1, "axial": 2}[plane]]),
                        "width": image.size[0], "height": image.size[1], **{"choice": choice}}
                name = f"{plane}-{index:04d}" if kind == "slice" else f"{plane}-{kind}"
                report.count("images", f"{kind}:{plane}")
                yield {"__key__": self.key(stem, name), self.image_field: image, **_caption_fields(captions),
                       "json": meta}


# ======================================================================================================
# Plain 2-D images
# ======================================================================================================
class ImagesSource(_NamedByPolicy, Source):
    """Plain 2-D images (fundus, pathology, microscopy...) with labels from a CSV or from folder names.

    Labels become UniMed-style caption variants from the modality's templates (txt + captions.json), and a
    'cls' class index when an image has exactly one label. The class list is in the manifest notes.
    """

    domain = "biomed"
    name = "images"
    image_format = "png"  # writer default (--image-format overrides): lossless
    help = "2-D fundus/pathology/microscopy images, labels from a CSV or folder names, template captions"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--modality", default="generic",
                            help="fundus, pathology, microscopy, xray, ct, mri, ultrasound (selects caption templates)")
        parser.add_argument("--label-from", choices=("auto", "csv", "folder", "none"), default="auto",
                            help="auto: --labels CSV if given, else the folder name below each input folder")
        parser.add_argument("--classes", default=None, help="comma list fixing the class order of the 'cls' index")
        parser.add_argument("--stain", default=None, help="stain for pathology/microscopy captions, e.g. H&E")
        parser.add_argument("--max-side", type=int, default=1024, help="downscale images whose longer side is larger")
        parser.add_argument("--image-format", default="png", help="png or jpg")
        parser.add_argument("--unlabeled", choices=("keep", "skip"), default="keep",
                            help="images without a label: keep with label-free captions (default) or skip")
        parser.add_argument("--source-paths", choices=_SourceNames.MODES, default="relative",
                            help="how samples and the manifest name input files: the path below the named input "
                                 "(relative, default) or a one-way hash of it (hashed: when folders are patient-named)")
        _add_caption_arguments(parser)

    def __init__(self, options: argparse.Namespace):
        super().__init__(options)
        self.key = _KeyMaker()
        self.image_field = _image_field(getattr(options, "image_format", "png"))
        self.templates = _templates(options)
        self.labels = _label_table(options)
        mode = getattr(options, "label_from", "auto")
        if mode == "auto":
            mode = "csv" if self.labels else "folder"
        if mode == "csv" and self.labels is None:
            raise IngestError("--label-from csv needs --labels FILE.csv")
        self.label_from = mode
        self.max_captions = getattr(options, "max_captions", 5)
        self.path_mode = getattr(options, "source_paths", "relative")
        _SourceNames([], self.path_mode)

    def _labelled_files(self, inputs: list[Path], report: IngestReport) -> list[tuple[Path, list[str]]]:
        from clipzoo.biomed.labels import folder_label

        out = []
        for item in inputs:
            root = Path(item)
            for path in expand_inputs([root], IMAGE_SUFFIXES, report):
                if self.label_from == "csv":
                    labels = self.labels.labels_for(path) or []
                elif self.label_from == "folder" and root.is_dir():
                    label = folder_label(path, root)
                    labels = [label] if label else []
                else:
                    labels = []
                out.append((path, labels))
        return out

    def samples(self, inputs: list[Path], report: IngestReport) -> Iterator[dict[str, Any]]:
        from clipzoo.biomed.imaging import ImageReadError, load_rgb

        files = self._labelled_files(inputs, report)
        classes = _csv_list(getattr(self.options, "classes", None)) or sorted({l for _, ls in files for l in ls})
        report.notes["classes"] = classes
        modality = getattr(self.options, "modality", "generic")
        names = _SourceNames(inputs, self.path_mode)
        for path, labels in files:
            report.input_seen(path)
            source = names(path)
            if not labels and getattr(self.options, "unlabeled", "keep") == "skip":
                report.skip(source, "no label (not in the CSV / not in a class folder)", kind="policy")
                continue
            try:
                loaded = load_rgb(path, max_side=getattr(self.options, "max_side", 1024), keep_grey=True)
            except ImageReadError as exc:
                report.skip(source, str(exc))
                continue
            except Exception as exc:
                _unexpected(report, source, exc)
                continue
            captions = self.templates.captions(modality, labels, max_variants=self.max_captions,
                                               stain=getattr(self.options, "stain", None))
            meta = {"source": source, "modality": modality, "labels": labels, **loaded.metadata()}
            sample = {"__key__": self.key(*(labels[:1] or ["unlabeled"]), names.stem(path)),
                      self.image_field: loaded.image, **_caption_fields(captions), "json": meta}
            if len(labels) == 1 and labels[0] in classes:
                sample["cls"] = classes.index(labels[0])
                meta["class_index"] = sample["cls"]
            for label in labels or ["(none)"]:
                report.count("labels", label)
            yield sample
