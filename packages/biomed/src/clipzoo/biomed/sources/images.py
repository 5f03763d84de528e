"""``clipzoo ingest biomed images``: plain 2-D images labelled from a CSV or folder names, template captions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterator

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
        classes = csv_list(self.options.classes) or sorted({l for _, ls in files for l in ls})
        report.notes["classes"] = classes
        modality = self.options.modality
        names = SourceNames(inputs, self.path_mode)
        for path, labels in files:
            report.input_seen(path)
            source = names(path)
            if not labels and self.options.unlabeled == "skip":
                report.skip(source, "no label (not in the CSV / not in a class folder)", kind="policy")
                continue
            try:
                loaded = load_rgb(path, max_side=self.options.max_side, keep_grey=True)
            except ImageReadError as exc:
                report.skip(source, str(exc))
                continue
            except Exception as exc:
                skip_unexpected(report, source, exc)
                continue
            captions = self.templates.captions(modality, labels, max_variants=self.max_captions,
                                               stain=self.options.stain)
            meta = {"source": source, "modality": modality, "labels": labels, **loaded.metadata()}
            sample = {"__key__": self.key(*(labels[:1] or ["unlabeled"]), names.stem(path)),
                      self.image_field: loaded.image, **caption_fields(captions), "json": meta}
            if len(labels) == 1 and labels[0] in classes:
                sample["cls"] = classes.index(labels[0])
                meta["class_index"] = sample["cls"]
            for label in labels or ["(none)"]:
                report.count("labels", label)
            yield sample
