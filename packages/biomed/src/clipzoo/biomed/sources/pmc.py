"""``clipzoo ingest biomed jats``: figure-caption pairs from PMC/JATS articles.

Inputs become article packages (the XML plus the files beside it): single .nxml/.xml files, PMC OA .tar.gz
packages streamed member by member (never extracted), and PMC Cloud Service mirrors read through their CSV file
lists. :mod:`clipzoo.biomed.jats` parses each article; every ``<fig>`` with a caption becomes a sample.
"""

from __future__ import annotations

import argparse
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from clipzoo.biomed.imaging import NEAR_DUPLICATE_DISTANCE
from clipzoo.biomed.sources._common import (
    IMAGE_WORKER_IMPORTS,
    KeyMaker,
    add_image_arguments,
    csv_list,
    image_field_for,
)
from clipzoo.core.ingest import IngestReport, Source, expand_inputs


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


def _group(ident: str) -> str:
    """The sample group of an article's figures (``__group__``): the engine keeps one unit's copy of it."""
    return f"article {ident}"


class JatsSource(Source):
    """Figure-caption pairs from PMC/JATS articles (BIOMEDICA-style).

    Inputs: .nxml/.xml articles, article package folders, PMC OA .tar.gz packages (streamed, never extracted;
    members with absolute or '..' paths refused) and folders of them, and mirrors of the PMC Cloud Service
    layout (a folder with ``oa_comm/``/``oa_noncomm/`` trees: articles and licenses from their CSV file lists).
    One sample per <fig> (not tables, inline graphics, formulae or supplementary material): image.jpg (RGB,
    downscaled to --max-side with the original size in the metadata), txt (caption title + paragraphs) and json
    (PMCID, PMID, DOI, title, journal, year, license). The manifest counts articles with/without figures and
    articles per license.
    """

    domain = "biomed"
    name = "jats"
    image_format = "jpg"  # writer default (--image-format overrides): figures are photos and charts
    # an article seen twice is ingested once: within a work unit here, across units by the engine's merge (each
    # sample names its article as __group__); near-duplicate figures are dropped within one unit (64 inputs unless
    # --unit-size says otherwise), and across units `clipzoo curate` (dedup) finds them
    checks_across_inputs = True
    # TIFF: many PMC figures; lxml: the article; imagehash + scipy.fftpack (imported by its phash): --near-duplicates
    worker_imports = (*IMAGE_WORKER_IMPORTS, "PIL.TiffImagePlugin", "lxml.etree", "clipzoo.biomed.jats", "imagehash",
                      "scipy.fftpack")
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
        add_image_arguments(parser, cls.image_format)
        parser.add_argument("--near-duplicates", choices=("drop", "keep", "off"), default="drop",
                            help="perceptual-hash near-duplicate images across the run: drop (default), keep "
                                 "(flagged in metadata) or off (no hashing)")
        parser.add_argument("--phash-distance", type=int, default=NEAR_DUPLICATE_DISTANCE,
                            help="max pHash Hamming distance of a near duplicate")
        parser.add_argument("--max-member-mb", type=float, default=256.0,
                            help="archive members larger than this are not read")

    def __init__(self, options: argparse.Namespace | None = None):
        super().__init__(options)
        self.key = KeyMaker()
        from clipzoo.biomed.imaging import NearDuplicateIndex

        self.allowed = set(csv_list(self.options.licenses)) or None
        self.image_field = image_field_for(self.options.image_format)
        self.missing = self.options.missing_images
        self.max_side = self.options.max_side
        self.duplicates = self.options.near_duplicates
        self.index = NearDuplicateIndex(self.options.phash_distance) if self.duplicates != "off" else None
        self.max_member = int(self.options.max_member_mb * 1024 * 1024)
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
                report.skip(package.source, f"{_group(ident)} already ingested from {self._seen_articles[ident]}",
                            kind="duplicate")
                continue
            self._seen_articles[ident] = package.source
            with report.grouped(_group(ident), package.source):  # dropped if another unit read it first
                yield from self._article_samples(package, article, ident, report)

    def _article_samples(self, package: _Package, article, ident: str,
                         report: IngestReport) -> Iterator[dict[str, Any]]:
        """One article's figure samples, with its license and article counts."""
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
            return
        if not article.figures:
            report.count("articles", "without_figures")
            return
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
            sample: dict[str, Any] = {"__key__": key, "__group__": _group(ident), "txt": fig.caption}
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
