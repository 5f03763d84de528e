"""DICOM -> display-ready 8-bit RGB frames, plus series grouping and slice ordering.

Pixel pipeline (DICOM PS3.3 C.11 / C.7.6.3), with pydicom doing each step:
1. decode (``Dataset.pixel_array``): compressed transfer syntaxes through pydicom's decoder plugins
   (JPEG-2000 via Pillow or pylibjpeg-openjpeg, JPEG baseline via Pillow, RLE natively); YBR is converted
   to RGB by pydicom;
2. grey images: modality LUT (``apply_modality_lut``: rescale slope/intercept -> HU for CT), then the VOI
   transform: a user window or preset, else the file's VOI LUT Sequence (looked up here, see
   ``_lookup_voi_lut``), else its window centre/width (``apply_windowing``), else a CT preset (``--ct-window``,
   soft tissue by default), else the image's min..max; MONOCHROME1 is inverted afterwards so that high
   values are always bright;
3. PALETTE COLOR through its lookup tables (``apply_color_lut``).

Frames come back as ``uint8 [frames, rows, columns, 3]`` - (height, width) order as pydicom and PIL give
them. Only non-identifying tags reach the metadata (see :data:`SAFE_TAGS`); the SeriesInstanceUID is kept only
as a one-way hash, so series stay groupable without a linkable identifier.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Presets (centre, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft-tissue": (40.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
}

# DICOM keyword -> metadata name. Nothing here identifies a patient (no names, ids, dates, institutions).
SAFE_TAGS = {
    "Modality": "modality",
    "BodyPartExamined": "body_part",
    "SeriesDescription": "series_description",
    "ViewPosition": "view_position",
    "ImageLaterality": "laterality",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "manufacturer_model",
    "PhotometricInterpretation": "photometric_interpretation",
    "Rows": "rows",
    "Columns": "columns",
    "BitsStored": "bits_stored",
    "PixelSpacing": "pixel_spacing",
    "ImagerPixelSpacing": "imager_pixel_spacing",
    "SliceThickness": "slice_thickness",
    "SpacingBetweenSlices": "spacing_between_slices",
    "ImageOrientationPatient": "image_orientation",
    "ImagePositionPatient": "image_position",
    "KVP": "kvp",
    "MagneticFieldStrength": "field_strength",
    "EchoTime": "echo_time",
    "RepetitionTime": "repetition_time",
    "ConvolutionKernel": "convolution_kernel",
    "ContrastBolusAgent": "contrast_agent",
}


class DicomReadError(ValueError):
    """A DICOM file that cannot become an image: not DICOM, no pixel data, no decoder for its syntax."""


def _plain(value: Any) -> Any:
    """pydicom values (MultiValue, DSfloat, IS, PersonName...) -> JSON-friendly Python values."""
    from pydicom.multival import MultiValue

    if isinstance(value, (MultiValue, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) or type(value).__name__ in ("DSfloat", "DSdecimal"):
        return float(value)
    if isinstance(value, int) or type(value).__name__ == "IS":
        return int(value)
    return str(value).strip()


def series_id(series_uid: str) -> str:
    """A one-way 16-hex-digit id for a SeriesInstanceUID (groupable, not linkable to the hospital's records)."""
    return hashlib.sha256(series_uid.encode()).hexdigest()[:16]


def slice_normal(orientation) -> "Any | None":
    import numpy as np

    if orientation is None or len(orientation) != 6:
        return None
    iop = np.asarray([float(v) for v in orientation])
    normal = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else None


def plane_name(orientation) -> str | None:
    """``axial``/``coronal``/``sagittal`` from ImageOrientationPatient (the normal's dominant patient axis)."""
    import numpy as np

    normal = slice_normal(orientation)
    if normal is None:
        return None
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def safe_metadata(ds) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for keyword, name in SAFE_TAGS.items():
        value = ds.get(keyword)
        if value not in (None, ""):
            meta[name] = _plain(value)
    tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsuid:
        meta["transfer_syntax"] = str(tsuid)
        meta["transfer_syntax_name"] = tsuid.name
    uid = ds.get("SeriesInstanceUID")
    if uid:
        meta["series_id"] = series_id(str(uid))
    meta["number_of_frames"] = int(ds.get("NumberOfFrames", 1) or 1)
    plane = plane_name(ds.get("ImageOrientationPatient"))
    if plane:
        meta["plane"] = plane
    return meta


@dataclass
class DicomHeader:
    """What grouping and ordering need, read without the pixel data."""

    path: Path
    series_key: str
    position: float | None  # along the slice normal, mm
    instance_number: int | None
    meta: dict[str, Any] = field(default_factory=dict)


def _dcmread(path: Path, stop_before_pixels: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as exc:
        raise DicomReadError(f"not a DICOM file: {exc}") from exc
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise DicomReadError(f"unreadable DICOM ({type(exc).__name__}: {exc})") from exc


def read_header(path: str | Path) -> DicomHeader:
    path = Path(path)
    ds = _dcmread(path, stop_before_pixels=True)
    meta = safe_metadata(ds)
    normal = slice_normal(ds.get("ImageOrientationPatient"))
    ipp = ds.get("ImagePositionPatient")
    position = None
    if normal is not None and ipp is not None and len(ipp) == 3:
        position = float(sum(float(a) * float(b) for a, b in zip(normal, ipp)))
    instance = ds.get("InstanceNumber")
    return DicomHeader(
        path=path,
        series_key=meta.get("series_id") or f"file-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}",
        position=position,
        instance_number=int(instance) if instance not in (None, "") else None,
        meta=meta,
    )


def group_series(headers: list[DicomHeader]) -> dict[str, list[DicomHeader]]:
    """Group by SeriesInstanceUID; order each series along the slice normal.

    When every slice of a series has a position the order is by position (ascending along the normal);
    otherwise by InstanceNumber, then file name.
    """
    series: dict[str, list[DicomHeader]] = {}
    for h in headers:
        series.setdefault(h.series_key, []).append(h)
    for items in series.values():
        if all(h.position is not None for h in items):
            items.sort(key=lambda h: (h.position, h.instance_number or 0, h.path.name))
        else:
            items.sort(key=lambda h: (h.instance_number is None, h.instance_number or 0, h.path.name))
    return series


def parse_window(text: str | None) -> tuple[float, float] | str | None:
    """``"40,400"`` -> (40.0, 400.0); a preset name stays a name; ``None``/``"file"`` -> None."""
    if text in (None, "", "file"):
        return None
    if text in CT_WINDOWS:
        return text
    try:
        center, width = (float(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(
            f"window {text!r}: give CENTRE,WIDTH (e.g. 40,400) or a preset ({', '.join(CT_WINDOWS)})"
        ) from None
    if width <= 1:
        raise ValueError(f"window width must be > 1, got {width}")
    return center, width


def _output_range(ds) -> tuple[float, float]:
    """The [y_min, y_max] pydicom's apply_windowing maps a window onto (see its source / PS3.3 C.11.2.1.2)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 0:
        y_min, y_max = 0.0, float(2**bits - 1)
    else:
        y_min, y_max = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        y_min, y_max = y_min * float(slope) + float(intercept), y_max * float(slope) + float(intercept)
    return y_min, y_max


def _voi_dataset(ds, window: tuple[float, float]):
    """A small dataset holding only what apply_windowing reads, with ``window`` set (``ds`` stays untouched)."""
    from pydicom.dataset import Dataset

    view = Dataset()
    for keyword in ("PhotometricInterpretation", "BitsStored", "PixelRepresentation", "RescaleSlope",
                    "RescaleIntercept", "ModalityLUTSequence", "VOILUTFunction"):
        if keyword in ds:
            setattr(view, keyword, ds.get(keyword))
    view.WindowCenter, view.WindowWidth = window
    return view


def _lookup_voi_lut(values, ds, item):
    """Map integer modality-LUT output through a VOI LUT Sequence item (PS3.3 C.11.2.1.1) -> (float array, bits).

    Done here rather than with ``pydicom.pixels.apply_voi_lut``: pydicom 3.0 indexes with an array of the LUT's
    entry type, so an 8-bit LUT with more than 256 entries wraps around.
    """
    import numpy as np

    n, first, bits = (int(v) for v in item.LUTDescriptor)
    n = n or 65536  # 0 means 2**16 entries
    data = item.LUTData
    if isinstance(data, bytes):
        tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        little = True if tsuid is None else tsuid.is_little_endian
        lut = np.frombuffer(data, dtype="<u2" if little else ">u2")[:n]
    else:
        lut = np.asarray(data if isinstance(data, (list, tuple)) or hasattr(data, "__len__") else [data])
    index = np.clip(np.asarray(values, dtype=np.int64) - first, 0, len(lut) - 1)
    return lut[index].astype(np.float64), bits


def grey_to_unit(arr, ds, window=None, ct_window: str = "soft-tissue"):
    """Stored grey values -> float [0, 1] after modality LUT and VOI (see module docstring); plus what was used."""
    import numpy as np
    from pydicom.pixels import apply_modality_lut, apply_windowing

    modality_values = apply_modality_lut(arr, ds)
    values = modality_values.astype(np.float64)
    modality = str(ds.get("Modality", "")).upper()
    if isinstance(window, str):
        window = CT_WINDOWS[window]
        source = "preset"
    else:
        source = "user"
    if window is None and ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        integral = np.issubdtype(modality_values.dtype, np.integer)
        lut_input = modality_values if integral else np.rint(values).astype(np.int64)
        out, bits = _lookup_voi_lut(lut_input, ds, item)
        used = {"source": "voi-lut", "explanation": str(item.get("LUTExplanation", ""))}
        unit = out / float(2**bits - 1)
    else:
        if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
            center = ds["WindowCenter"].value
            width = ds["WindowWidth"].value
            window = (float(center[0] if ds["WindowCenter"].VM > 1 else center),
                      float(width[0] if ds["WindowWidth"].VM > 1 else width))
            source = "file"
        if window is None and modality == "CT":
            window, source = CT_WINDOWS[ct_window], f"ct-default:{ct_window}"
        if window is None:
            lo, hi = float(values.min()), float(values.max())
            unit = np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo)
            used = {"source": "minmax", "min": lo, "max": hi}
        else:
            view = _voi_dataset(ds, window)
            y_min, y_max = _output_range(view)
            unit = (apply_windowing(values, view) - y_min) / (y_max - y_min)
            used = {"source": source, "center": window[0], "width": window[1],
                    "function": str(ds.get("VOILUTFunction", "LINEAR"))}
    unit = np.clip(unit, 0.0, 1.0)
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
        unit = 1.0 - unit
    used["inverted"] = str(ds.PhotometricInterpretation) == "MONOCHROME1"
    return unit, used


def _to_uint8(unit):
    import numpy as np

    return np.rint(np.asarray(unit) * 255.0).astype(np.uint8)


def decode(ds, path: Path | str = "<dataset>"):
    """``ds.pixel_array`` with the reasons a person can act on when it fails."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DicomReadError("no pixel data (not an image object: e.g. a structured report or presentation state)")
    tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        return ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        name = getattr(tsuid, "name", str(tsuid))
        raise DicomReadError(
            f"unsupported transfer syntax {tsuid} ({name}): no installed pydicom decoder plugin could decode it "
            f"({exc}); install one (e.g. pylibjpeg-libjpeg or pyjpegls for JPEG-LS/lossless JPEG)"
        ) from exc
    except (ValueError, AttributeError, KeyError, OSError, EOFError) as exc:
        raise DicomReadError(f"corrupt pixel data ({type(exc).__name__}: {exc})") from exc


def read_dicom(path: str | Path, window=None, ct_window: str = "soft-tissue"):
    """Read one DICOM file -> (``uint8 [frames, rows, columns, 3]``, safe metadata).

    ``window``: ``None`` (the file's VOI, then modality defaults), a preset name from :data:`CT_WINDOWS`, or
    ``(centre, width)`` in modality units (HU for CT).
    """
    import numpy as np
    from pydicom.pixels import apply_color_lut

    path = Path(path)
    ds = _dcmread(path, stop_before_pixels=False)
    arr = decode(ds, path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        arr = arr[None]
    pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    meta = safe_metadata(ds)
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        out = _to_uint8(rgb.astype(np.float64) / float(2**bits - 1))
        meta["voi"] = {"source": "palette", "lut_bits": bits}
    elif samples == 3:
        # pydicom's pixel_array already converted YBR_* to RGB (its as_rgb default).
        if arr.dtype != np.uint8:
            top = float(2 ** int(ds.BitsStored) - 1)
            arr = _to_uint8(arr.astype(np.float64) / top)
        out = arr
        meta["voi"] = {"source": "color"}
    elif samples == 1:
        unit, used = grey_to_unit(arr, ds, window=window, ct_window=ct_window)
        grey = _to_uint8(unit)
        out = np.repeat(grey[..., None], 3, axis=-1)
        meta["voi"] = used
    else:
        raise DicomReadError(f"unsupported SamplesPerPixel={samples} with PhotometricInterpretation {pi}")
    return np.ascontiguousarray(out), meta
