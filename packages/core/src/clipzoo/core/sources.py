"""Core's ingest sources: generic image-caption folders, and the synthetic shapes set.

``clipzoo ingest core images IMG_OR_DIR... --captions captions.csv --out DIR``
    image files (.png/.jpg/.jpeg/.webp/.tif/.tiff/.bmp/.gif, any case) with their text from a CSV
    (``path`` or ``filename`` column plus ``caption`` and/or ``label``) or, failing that, from a sidecar
    ``IMAGE.txt`` next to each image. With ``--label-template 'a photo of a {label}.'`` labels become captions.
``clipzoo ingest core synthetic --count 3000 --split train --out DIR``
    the seeded shapes set of :mod:`clipzoo.core.data.synthetic` (no inputs).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any, Iterator

from clipzoo.core.data.formats import IMAGE_SUFFIXES  # one list for the whole of core
from clipzoo.core.ingest import IngestError, IngestReport, Source, expand_inputs


class ImagesSource(Source):
    domain = "core"
    name = "images"
    help = "image files with captions/labels from a CSV or sidecar .txt files"
    image_format = "png"
    input_suffixes = IMAGE_SUFFIXES  # each image is read on its own: folders split into units of files
    worker_imports = ("PIL.Image", "PIL.PngImagePlugin", "PIL.JpegImagePlugin", "PIL.TiffImagePlugin")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--captions", type=Path, help="CSV with a path/filename column and caption and/or label columns")
        parser.add_argument("--label-template", default="a photo of a {label}.",
                            help="caption made from a label when no caption is given (default: %(default)r)")
        parser.add_argument("--license", default="unknown", help="license recorded on every sample (default: unknown)")
        parser.add_argument("--max-side", type=int, default=1024,
                            help="downscale images whose longer side exceeds this (original size kept in metadata)")

    def _table(self) -> dict[str, dict[str, str]]:
        path = self.options.captions
        if path is None:
            return {}
        if not path.is_file():
            raise IngestError(f"--captions {path}: no such file")
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = set(reader.fieldnames or [])
            key = "path" if "path" in fields else "filename" if "filename" in fields else None
            if key is None or not fields & {"caption", "label"}:
                raise IngestError(f"--captions {path}: needs a 'path' or 'filename' column and 'caption' and/or 'label'"
                                  f" (it has {', '.join(sorted(fields)) or 'no header'})")
            return {Path(row[key]).name.lower(): row for row in reader}

    def samples(self, inputs: list[Path], report: IngestReport) -> Iterator[dict[str, Any]]:
        from PIL import Image, UnidentifiedImageError

        from clipzoo.core.data.writer import safe_key

        if not inputs:
            raise IngestError("give at least one image file or folder")
        table = self._table()
        for path in expand_inputs(inputs, IMAGE_SUFFIXES, report):
            report.input_seen(path)
            row = table.get(path.name.lower(), {})
            caption = row.get("caption", "").strip()
            label = row.get("label", "").strip()
            sidecar = path.with_suffix(".txt")
            if not caption and sidecar.is_file():
                caption = sidecar.read_text(encoding="utf-8").strip()
            if not caption and label:
                caption = self.options.label_template.format(label=label)
            if not caption:
                report.skip(path, "no caption: not in --captions and no sidecar .txt")
                continue
            try:
                with Image.open(path) as im:
                    im.load()
                    original = im.size
                    image = im.convert("RGB")
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                report.skip(path, f"unreadable image: {exc}")
                continue
            if max(image.size) > self.options.max_side:
                image.thumbnail((self.options.max_side, self.options.max_side))
            meta = {"source": str(path), "license": self.options.license, "original_size": list(original)}
            if label:
                meta["label"] = label
            report.count("license", self.options.license)
            yield {"__key__": safe_key(path.parent.name, path.stem), "image.png": image, "txt": caption, "json": meta}


class SyntheticSource(Source):
    domain = "core"
    name = "synthetic"
    help = "seeded synthetic shape/colour/size/background pairs (no inputs)"
    image_format = "png"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--count", type=int, default=3000, help="pairs to generate (default: %(default)s)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--split", choices=("train", "test"), default="train",
                            help="test draws distinct attribute combinations (at most 320)")
        parser.add_argument("--image-size", type=int, default=64)

    def samples(self, inputs: list[Path], report: IngestReport) -> Iterator[dict[str, Any]]:
        from clipzoo.core.data.synthetic import synthetic_samples

        if inputs:
            raise IngestError("the synthetic source takes no inputs")
        o = self.options
        try:
            samples = synthetic_samples(o.count, o.seed, o.split, o.image_size)
            for sample in samples:
                report.count("license", "cc0")
                yield sample
        except ValueError as exc:
            raise IngestError(str(exc)) from None
