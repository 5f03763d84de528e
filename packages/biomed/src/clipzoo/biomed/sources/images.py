"""``clipzoo ingest biomed images``: plain 2-D images labelled from a CSV or folder names, template captions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Iterator

from clipzoo.biomed.sources._common import (
    IMAGE_SUFFIXES,
    IMAGE_WORKER_IMPORTS,
    KeyMaker,
    NamedByPolicy,
    SourceNames,
    add_caption_arguments,
    add_image_arguments,
    add_privacy_arguments,
    caption_fields,
    caption_templates,
    csv_list,
    image_field_for,
    label_table,
    redacted_message,
    skip_unexpected,
)
from clipzoo.core.ingest import IngestError, IngestReport, Source, expand_inputs


class ImagesSource(NamedByPolicy, Source):
    """Plain 2-D images (fundus, pathology, microscopy...) with labels from a CSV or from folder names.

    Labels become UniMed-style caption variants from the modality's templates (txt + captions.json), and a
    'cls' class index when an image has exactly one label. The class list is in the manifest notes.
    """

    domain = "biomed"
    name = "images"
    image_format = "png"  # writer default (--image-format overrides): lossless
    worker_imports = (*IMAGE_WORKER_IMPORTS, "PIL.TiffImagePlugin")  # TIFF: not among PIL's preinit plugins
    #: ``str(file) -> labels`` and the class list over every file of the run, set when the units are planned:
    #: a folder label needs the folder the user named, and the class list (the ``cls`` indices) all the labels
    file_labels: dict[str, list[str]] | None = None
    planned_classes: list[str] | None = None
    help = "2-D fundus/pathology/microscopy images, labels from a CSV or folder names, template captions"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--modality", default="generic",
                            help="fundus, pathology, microscopy, xray, ct, mri, ultrasound (selects caption templates)")
        parser.add_argument("--label-from", choices=("auto", "csv", "folder", "none"), default="auto",
                            help="auto: --labels CSV if given, else the folder name below each input folder")
        parser.add_argument("--classes", default=None, help="comma list fixing the class order of the 'cls' index")
        parser.add_argument("--stain", default=None, help="stain for pathology/microscopy captions, e.g. H&E")
        add_image_arguments(parser, cls.image_format)
        parser.add_argument("--unlabeled", choices=("keep", "skip"), default="keep",
                            help="images without a label: keep with label-free captions (default) or skip")
        add_privacy_arguments(parser, free_text_help=None)  # plain images carry no free-text header fields
        add_caption_arguments(parser)

    def __init__(self, options: argparse.Namespace | None = None):
        super().__init__(options)
        self.key = KeyMaker()
        self.image_field = image_field_for(self.options.image_format)
        self.templates = caption_templates(self.options)
        self.labels = label_table(self.options)
        mode = self.options.label_from
        if mode == "auto":
            mode = "csv" if self.labels else "folder"
        if mode == "csv" and self.labels is None:
            raise IngestError("--label-from csv needs --labels FILE.csv")
        self.label_from = mode
        self.max_captions = self.options.max_captions
        self.path_mode = self.options.source_paths
        SourceNames([], self.path_mode)

    def _labels_of(self, path: Path, root: Path) -> list[str]:
        """An image's labels: from the CSV, or the folder holding it below ``root`` (the input it came from)."""
        from clipzoo.biomed.labels import folder_label

        if self.label_from == "csv":
            return self.labels.labels_for(path) or []
        if self.label_from == "folder" and root.is_dir():
            label = folder_label(path, root)
            return [label] if label else []
        return []

    def _labelled_files(self, inputs: list[Path], report: IngestReport) -> list[tuple[Path, list[str]]]:
        """Each image below ``inputs`` with its labels, a folder label taken below ITS input."""
        return [(path, self._labels_of(path, Path(item)))
                for item in inputs for path in expand_inputs([item], IMAGE_SUFFIXES, report, self.record_path)]

    @staticmethod
    def _key_label(labels: dict[str, list[str]]) -> Callable[[Path], str]:
        """The key part before the stem, by file: its first label. Two class folders may hold one file name
        (``normal/0001.png``, ``glaucoma/0001.png``): their keys differ already, so their stems need not."""
        return lambda path: (labels.get(str(path)) or ["unlabeled"])[0]

    def _classes(self, files: list[tuple[Path, list[str]]]) -> list[str]:
        return csv_list(self.options.classes) or sorted({label for _, labels in files for label in labels})

    def units(self, inputs: list[Path | str], unit_size: int, report: IngestReport) -> list[list[Path | str]]:
        """One image per finest unit, so ``--workers N`` reads a folder in parallel. Names, key stems, each
        image's labels and the class list are planned over all images, so every unit writes the same
        ``classes`` note and ``cls`` indices, whatever the unit size or the worker count."""
        files = self._labelled_files([Path(i) for i in inputs], report)
        self.file_labels = {str(p): labels for p, labels in files}
        self.planned_classes = self._classes(files)
        return self.plan_files(inputs, IMAGE_SUFFIXES, unit_size, report, files=[p for p, _ in files],
                               group=self._key_label(self.file_labels))

    def _files(self, inputs: list[Path], report: IngestReport) -> tuple[list[tuple[Path, list[str]]], list[str]]:
        """This unit's images with their planned labels, and the planned class list; without planning (or for
        an image the plan does not hold, e.g. a staged URL), labels and classes from ``inputs`` as today."""
        planned = self.file_labels
        if planned is None:
            files = self._labelled_files(inputs, report)
            return files, self._classes(files)
        files = [(path, planned[str(path)] if str(path) in planned else self._labels_of(path, Path(path)))
                 for path in expand_inputs(inputs, IMAGE_SUFFIXES, report, self.record_path)]
        return files, self.planned_classes if self.planned_classes is not None else self._classes(files)

    def samples(self, inputs: list[Path], report: IngestReport) -> Iterator[dict[str, Any]]:
        from clipzoo.biomed.imaging import ImageReadError, load_rgb

        files, classes = self._files(inputs, report)
        report.notes["classes"] = classes
        names = self.names(inputs)
        labels_by_file = {**(self.file_labels or {}), **{str(p): labels for p, labels in files}}
        key_label = self._key_label(labels_by_file)
        stems = self.stems_for([p for p, _ in files], names, group=key_label)
        modality = self.options.modality
        for path, labels in files:
            report.input_seen(path)
            source = names(path)
            if not labels and self.options.unlabeled == "skip":
                report.skip(source, "no label (not in the CSV / not in a class folder)", kind="policy")
                continue
            try:
                loaded = load_rgb(path, max_side=self.options.max_side, keep_grey=True)
            except ImageReadError as exc:
                report.skip(source, redacted_message(exc, path, names))
                continue
            except Exception as exc:
                skip_unexpected(report, path, names, exc)
                continue
            captions = self.templates.captions(modality, labels, max_variants=self.max_captions,
                                               stain=self.options.stain)
            meta = {"source": source, "modality": modality, "labels": labels, **loaded.metadata()}
            sample = {"__key__": self.key(key_label(path), stems[str(path)]),
                      self.image_field: loaded.image, **caption_fields(captions), "json": meta}
            if len(labels) == 1 and labels[0] in classes:
                sample["cls"] = classes.index(labels[0])
                meta["class_index"] = sample["cls"]
            for label in labels or ["(none)"]:
                report.count("labels", label)
            yield sample
