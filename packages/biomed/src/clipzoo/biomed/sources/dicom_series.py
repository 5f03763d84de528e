"""``clipzoo ingest biomed dicom``: DICOM files and folders as display-ready slices with template captions.

A header pass (:func:`clipzoo.biomed.dicom.read_header`) groups files into series ordered along the slice normal,
applies the burned-in-annotation policy, then each chosen slice's pixels are read and rendered.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterator

from clipzoo.biomed.sources._common import (
    IMAGE_WORKER_IMPORTS,
    KeyMaker,
    NamedByPolicy,
    SourceNames,
    add_caption_arguments,
    add_image_arguments,
    add_privacy_arguments,
    caption_fields,
    caption_templates,
    image_field_for,
    label_table,
    redacted_message,
    skip_unexpected,
    unique_stems,
)
from clipzoo.core.ingest import IngestError, IngestReport, Source, expand_inputs


class DicomSource(NamedByPolicy, Source):
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
    # pydicom.pixels imports the installed decoder plugins (pylibjpeg, openjpeg, libjpeg, jpeg_ls, rle) to list them
    worker_imports = (*IMAGE_WORKER_IMPORTS, "pydicom", "pydicom.pixels", "clipzoo.biomed.dicom", "tqdm")
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
        add_image_arguments(parser, cls.image_format)
        parser.add_argument("--keep-burned-in", action="store_true",
                            help="keep images whose BurnedInAnnotation is YES (text such as names in the pixels); "
                                 "default: skip and count them")
        add_privacy_arguments(parser, "record free-text tags (SeriesDescription, StudyDescription, ImageComments, "
                                       "ProtocolName, ...) under free_text; off by default: they often name the "
                                       "patient")
        add_caption_arguments(parser)

    def __init__(self, options: argparse.Namespace | None = None):
        super().__init__(options)
        self.key = KeyMaker()
        from clipzoo.biomed.dicom import CT_WINDOWS, parse_window

        try:
            self.window = parse_window(self.options.window)
        except ValueError as exc:
            raise IngestError(f"--window: {exc}") from exc
        self.ct_window = self.options.ct_window
        if self.ct_window not in CT_WINDOWS:
            raise IngestError(f"--ct-window {self.ct_window!r}: choose one of {', '.join(CT_WINDOWS)}")
        self.image_field = image_field_for(self.options.image_format)
        self.max_side = self.options.max_side
        self.templates = caption_templates(self.options)
        self.labels = label_table(self.options)
        self.max_captions = self.options.max_captions
        self.free_text = self.options.free_text
        self.keep_burned_in = self.options.keep_burned_in
        self.path_mode = self.options.source_paths
        SourceNames([], self.path_mode)  # refuse a bad mode before anything is read

    def _files(self, inputs: list[Path], report: IngestReport) -> Iterator[Path]:
        if not self.options.all_files:
            yield from expand_inputs(inputs, self.SUFFIXES, report, self.record_path)
            return
        for item in inputs:
            path = Path(item)
            if path.is_dir():
                yield from sorted(p for p in path.rglob("*") if p.is_file())
            elif path.is_file():
                yield path
            else:
                report.skip(self.record_path(path), "no such file or folder")

    def units(self, inputs: list[Path | str], unit_size: int, report: IngestReport) -> list[list[Path | str]]:
        """Whole series per unit: files of one SeriesInstanceUID always share a unit, wherever they were named.

        A series named file by file, or spread over two folders, would otherwise be split by ``unit_size`` and
        its slice order, indices and keys would change with the unit size. Each file's series is read as cheaply
        as pydicom allows (:func:`clipzoo.biomed.dicom.read_series_key`: only that UID, nothing from the pixel
        data on); only its one-way hash is used, and the engine's plan names inputs by fingerprints. Series
        come in the order of their first file (inputs as given, folder contents sorted) and are packed into
        units of at most ``unit_size`` files, except that a larger series is a unit of its own; a file without a
        SeriesInstanceUID, or one that cannot be read (its unit says why), stands alone.

        A file standing alone is keyed by the name the run gives it, not by its path (see :meth:`_lone_keys`);
        the names, distinct over the run, are planned here and travel to every unit.
        """
        from tqdm import tqdm

        from clipzoo.biomed.dicom import read_series_key

        self.input_roots = [Path(i) for i in inputs]
        files = list(self._files(list(inputs), report))
        keys = [read_series_key(path) for path in tqdm(files, desc="dicom series", unit="file",
                                                         disable=len(files) < 500, leave=False)]
        # stems only for the files standing alone (usually none): a series file is keyed by its series, and a
        # stem for every file would be copied into every unit
        alone = [path for path, key in zip(files, keys) if key is None]
        self.key_stems = unique_stems(alone, self.names(inputs))
        lone = self._lone_keys(alone, self.names(inputs))
        series: dict[str, list[Path | str]] = {}
        for path, key in zip(files, keys):
            series.setdefault(key or lone[str(path)], []).append(path)
        units: list[list[Path | str]] = []
        for members in series.values():
            if not units or len(units[-1]) + len(members) > unit_size:
                units.append([])
            units[-1].extend(members)
        return units

    def _lone_keys(self, files: list[Path | str], names: SourceNames) -> dict[str, str]:
        """``str(file) -> series key`` for files without a SeriesInstanceUID: a hash of the file's key stem (its
        name below the named input, or its hash with ``--source-paths hashed``; distinct over the run, as planned
        by :meth:`units`), so the key stays when the export folder moves and hashes no guessable absolute path."""
        from clipzoo.biomed.dicom import standalone_key

        stems = self.stems_for(files, names)
        return {str(f): standalone_key(stems[str(f)]) for f in files}

    def _headers(self, inputs: list[Path], report: IngestReport, names: SourceNames):
        from clipzoo.biomed.dicom import DicomReadError, read_header

        headers = []
        lone = []
        for path in self._files(inputs, report):
            report.input_seen(path)
            try:
                header = read_header(path, free_text=self.free_text)
            except DicomReadError as exc:  # its message may quote the path (OSError): named as the skip is
                report.skip(names(path), redacted_message(exc, path, names))
                report.count("skip_reasons", exc.kind)
                continue
            except Exception as exc:
                skip_unexpected(report, path, names, exc)
                continue
            if header.meta.get("burned_in_annotation") == "YES" and not self.keep_burned_in:
                report.skip(names(path), "burned-in annotation: BurnedInAnnotation is YES (text in the pixels may "
                                         "identify the patient); --keep-burned-in keeps such images", kind="policy")
                report.count("skip_reasons", "burned-in")
                continue
            headers.append(header)
            if not header.meta.get("series_id"):
                lone.append(header)
        keys = self._lone_keys([h.path for h in lone], names)
        for header in lone:
            header.series_key = keys[str(header.path)]
        return headers

    def samples(self, inputs: list[Path], report: IngestReport) -> Iterator[dict[str, Any]]:
        from PIL import Image
        from tqdm import tqdm

        from clipzoo.biomed.dicom import DicomReadError, group_series, read_dicom
        from clipzoo.biomed.quiet import quiet_library_logs

        quiet_library_logs()
        names = self.names(inputs)
        series = group_series(self._headers(inputs, report, names))
        report.count("dicom", "series", len(series))
        report.notes["source_paths"] = self.path_mode
        total = sum(len(v) if self.options.slices == "all" else 1 for v in series.values())
        bar = tqdm(total=total, desc="dicom slices", unit="file", disable=total < 50, leave=False)
        for series_key, items in series.items():
            chosen = range(len(items)) if self.options.slices == "all" else [len(items) // 2]
            if self.options.slices == "middle":  # the other slices' parsed headers are not needed any more
                for other in items[:len(items) // 2] + items[len(items) // 2 + 1:]:
                    other.dataset = None
            for index in chosen:
                header = items[index]
                bar.update(1)
                source = names(header.path)
                try:
                    frames, meta = read_dicom(header.path, window=self.window, ct_window=self.ct_window,
                                              free_text=self.free_text, header=header)
                except DicomReadError as exc:
                    report.skip(source, redacted_message(exc, header.path, names))
                    report.count("skip_reasons", exc.kind)
                    continue
                except Exception as exc:
                    skip_unexpected(report, header.path, names, exc)
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
                           **caption_fields(captions), "json": sample_meta}
        bar.close()
