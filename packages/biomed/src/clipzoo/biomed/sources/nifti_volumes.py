"""``clipzoo ingest biomed nifti``: NIfTI 3-D/4-D volumes as slices and projections with template captions.

Option parsing and validation (planes, slices, views, frame, spacing, window) live here; loading, reorienting
and scaling the volume are :mod:`clipzoo.biomed.nifti`'s.
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
    csv_list,
    image_field_for,
    label_table,
    redacted_message,
    skip_unexpected,
)
from clipzoo.core.ingest import IngestError, IngestReport, Source, expand_inputs


class NiftiSource(NamedByPolicy, Source):
    """NIfTI 3-D/4-D volumes via MONAI (LoadImage, Orientation RAS, optional Spacing, intensity scaling).

    Emits slices in the chosen planes (all, middle or every Nth) and/or per-volume projections (mip, mean),
    in radiological display; 4-D files keep one frame or the mean. The choices are recorded in every sample's
    metadata and in the manifest notes.
    """

    domain = "biomed"
    name = "nifti"
    image_format = "png"  # writer default (--image-format overrides): grey slices, lossless, one channel
    # monai.transforms (with torch) is by far the dearest first-input import, then nibabel (MONAI's NIfTI reader)
    worker_imports = (*IMAGE_WORKER_IMPORTS, "nibabel", "monai.transforms", "clipzoo.biomed.nifti")
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
        add_image_arguments(parser, cls.image_format, downscale=False)
        add_privacy_arguments(parser, "record the header's free-text fields (descrip, aux_file, intent_name) "
                                       "under free_text; off by default: they may name the patient")
        add_caption_arguments(parser)

    def __init__(self, options: argparse.Namespace | None = None):
        super().__init__(options)
        self.key = KeyMaker()
        from clipzoo.biomed.dicom import CT_WINDOWS, parse_window
        from clipzoo.biomed.nifti import PLANES

        self.planes = csv_list(self.options.planes)
        bad = [p for p in self.planes if p not in PLANES]
        if bad or not self.planes:
            raise IngestError(f"--planes {self.options.planes!r}: choose from {', '.join(PLANES)}")
        self.views = csv_list(self.options.views)
        if any(v not in ("mip", "mean") for v in self.views):
            raise IngestError(f"--views {self.options.views!r}: choose from mip, mean")
        slices = str(self.options.slices)
        if slices not in ("all", "middle", "none") and not (slices.isdigit() and int(slices) > 0):
            raise IngestError(f"--slices {slices!r}: use all, middle, none or a positive step")
        self.slices = slices
        frame = str(self.options.frame)
        if frame != "mean" and not frame.lstrip("-").isdigit():
            raise IngestError(f"--frame {frame!r}: an integer index or 'mean'")
        self.frame: int | str = frame if frame == "mean" else int(frame)
        spacing = self.options.spacing
        try:
            values = [float(v) for v in spacing.split(",")] if spacing else None
        except ValueError:
            raise IngestError(f"--spacing {spacing!r}: one number or three, in mm") from None
        if values is not None and len(values) not in (1, 3):
            raise IngestError(f"--spacing {spacing!r}: one number or three, in mm")
        self.spacing = None if values is None else tuple(values * 3 if len(values) == 1 else values)
        try:
            window = parse_window(self.options.window)
        except ValueError as exc:
            raise IngestError(f"--window: {exc}") from exc
        self.window = CT_WINDOWS[window] if isinstance(window, str) else window
        self.image_field = image_field_for(self.options.image_format)
        self.templates = caption_templates(self.options)
        self.labels = label_table(self.options)
        self.max_captions = self.options.max_captions
        self.free_text = self.options.free_text
        self.path_mode = self.options.source_paths
        SourceNames([], self.path_mode)

    def units(self, inputs: list[Path | str], unit_size: int, report: IngestReport) -> list[list[Path | str]]:
        """One volume per finest unit, so ``--workers N`` reads a folder's volumes in parallel; names and key
        stems are planned over all volumes (:meth:`NamedByPolicy.plan_files`), so the shards do not depend on
        the unit size or the worker count."""
        return self.plan_files(inputs, self.SUFFIXES, unit_size, report)

    def _indices(self, n: int) -> list[int]:
        if self.slices == "none":
            return []
        if self.slices == "middle":
            return [n // 2]
        step = 1 if self.slices == "all" else int(self.slices)
        return list(range(0, n, step))

    def _choice(self) -> dict[str, Any]:
        """What was chosen (planes, slices, views, frame, spacing, intensity): in every sample and the manifest."""
        from clipzoo.biomed.nifti import DEFAULT_PERCENTILES

        intensity = {"window": list(self.window)} if self.window else {"percentiles": list(DEFAULT_PERCENTILES)}
        return {"planes": self.planes, "slices": self.slices, "views": self.views, "frame": self.frame,
                "spacing": list(self.spacing) if self.spacing else None, "intensity": intensity,
                "display": "radiological; rows,columns"}

    def _views(self, unit, report: IngestReport) -> Iterator[tuple[str, str, int | None, Any]]:
        """``(kind, plane, slice index or None, grey uint8 image)`` for each chosen slice and projection of a
        volume scaled to 0..1; constant slices are counted and dropped unless --keep-empty."""
        import numpy as np

        from clipzoo.biomed.nifti import PLANE_AXIS, extract_slice, project

        for plane in self.planes:
            views = [("slice", i) for i in self._indices(unit.shape[PLANE_AXIS[plane]])]
            for kind, index in views + [(view, None) for view in self.views]:
                arr = extract_slice(unit, plane, index) if kind == "slice" else project(unit, plane, kind)
                if kind == "slice" and not self.options.keep_empty and float(np.ptp(arr)) < 1e-6:
                    report.count("empty_slices", plane)
                    continue
                yield kind, plane, index, np.rint(np.nan_to_num(arr, nan=0.0) * 255.0).astype(np.uint8)

    def samples(self, inputs: list[Path], report: IngestReport) -> Iterator[dict[str, Any]]:
        from PIL import Image

        from clipzoo.biomed.nifti import PLANE_AXIS, NiftiReadError, load_volume, scale_intensity

        names = self.names(inputs)
        modality = self.options.modality
        body_part = self.options.body_part
        choice = self._choice()
        report.notes["nifti"] = choice
        report.notes["source_paths"] = self.path_mode
        files = list(expand_inputs(inputs, self.SUFFIXES, report, names))
        stems = self.stems_for(files, names)
        for path in files:
            report.input_seen(path)
            source = names(path)
            try:
                volume = load_volume(path, spacing=self.spacing, frame=self.frame, header_text=self.free_text)
                unit = scale_intensity(volume.data, window=self.window)
            except NiftiReadError as exc:
                report.skip(source, redacted_message(exc, path, names))
                report.count("skip_reasons", exc.kind)
                continue
            except Exception as exc:
                skip_unexpected(report, path, names, exc)
                continue
            labels = self.labels.labels_for(path) if self.labels else None
            stem = stems[str(path)]
            for kind, plane, index, grey in self._views(unit, report):
                image = Image.fromarray(grey, "L")  # single-channel: CT/MR slices are grey
                captions = self.templates.captions(modality or "generic", labels, max_variants=self.max_captions,
                                                   plane=plane, body_part=body_part)
                meta = {"source": source, **volume.meta, "modality": modality, "body_part": body_part,
                        "labels": labels or [], "plane": plane, "kind": kind, "slice_index": index,
                        "num_slices": int(unit.shape[PLANE_AXIS[plane]]),
                        "width": image.size[0], "height": image.size[1], "choice": choice}
                name = f"{plane}-{index:04d}" if kind == "slice" else f"{plane}-{kind}"
                report.count("images", f"{kind}:{plane}")
                yield {"__key__": self.key(stem, name), self.image_field: image, **caption_fields(captions),
                       "json": meta}
