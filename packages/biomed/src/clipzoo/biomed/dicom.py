"""DICOM -> display-ready 8-bit frames (grey stays single-channel), plus series grouping and slice ordering.

Pixel pipeline (DICOM PS3.3 C.11 / C.7.6.3), with pydicom doing each step:
1. decode (``Dataset.pixel_array``): compressed transfer syntaxes through pydicom's decoder plugins
   (JPEG-2000 via Pillow or pylibjpeg-openjpeg, JPEG baseline via Pillow, JPEG lossless / 12-bit extended via
   pylibjpeg-libjpeg, JPEG-LS via pyjpegls, RLE via pylibjpeg-rle); YBR is converted to RGB by pydicom;
2. grey images: modality LUT (``apply_modality_lut``: rescale slope/intercept -> HU for CT), then the VOI
   transform: a user window or preset, else the file's VOI LUT Sequence (looked up here, see
   ``_lookup_voi_lut``), else its window centre/width (``apply_windowing``), else a CT preset (``--ct-window``,
   soft tissue by default), else the image's min..max; MONOCHROME1 is inverted afterwards so that high
   values are always bright;
3. PALETTE COLOR through its lookup tables (``apply_color_lut``).

Frames come back as ``uint8 [frames, rows, columns]`` for grey images and ``uint8 [frames, rows, columns, 3]``
for colour - (height, width) order as pydicom and PIL give them. Only non-identifying tags reach the metadata
(see :data:`SAFE_TAGS`); free-text tags (:data:`FREE_TEXT_TAGS`, where technologists type patient names) only
when asked for; the SeriesInstanceUID is kept only as a one-way hash, so series stay groupable without a
linkable identifier.

Every failure is a :class:`DicomReadError` whose ``kind`` is one of :data:`SKIP_KINDS`; its message starts with
that kind's phrase, so a manifest's skip list sorts into a few named reasons.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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
}

# Free text typed at the scanner or the RIS: often carries names, dates and findings ("CT chest for J. Smith").
# Kept only with ``free_text=True`` (``--free-text``), under ``meta["free_text"]``.
FREE_TEXT_TAGS = {
    "SeriesDescription": "series_description",
    "StudyDescription": "study_description",
    "ImageComments": "image_comments",
    "ProtocolName": "protocol_name",
    "PerformedProcedureStepDescription": "performed_procedure_step_description",
    "RequestedProcedureDescription": "requested_procedure_description",
    "AcquisitionComments": "acquisition_comments",
    "DerivationDescription": "derivation_description",
    "ContrastBolusAgent": "contrast_agent",
}

# kind -> the phrase a skip reason of that kind starts with.
SKIP_KINDS = {
    "not-dicom": "not a DICOM file",
    "not-image": "not an image object",
    "malformed-header": "malformed header",
    "corrupt-pixels": "corrupt pixel data",
    "unsupported-syntax": "unsupported transfer syntax",
    "unsupported-layout": "unsupported pixel layout",
    "burned-in": "burned-in annotation",
}


class DicomReadError(ValueError):
    """A DICOM file that cannot become an image; ``kind`` is a key of :data:`SKIP_KINDS`."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{SKIP_KINDS[kind]}: {detail}")
        self.kind = kind


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


def slice_normal(orientation) -> tuple[float, float, float] | None:
    """The unit normal (row x column direction cosines) of ImageOrientationPatient, or None.

    Plain Python: three products of six floats, called twice per file, cost more through numpy's array setup.
    """
    if orientation is None or len(orientation) != 6:
        return None
    r0, r1, r2, c0, c1, c2 = (float(v) for v in orientation)
    normal = (r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0)
    norm = math.sqrt(sum(v * v for v in normal))
    return tuple(v / norm for v in normal) if norm > 0 else None


def plane_name(orientation) -> str | None:
    """``axial``/``coronal``/``sagittal`` from ImageOrientationPatient (the normal's dominant patient axis)."""
    normal = slice_normal(orientation)
    if normal is None:
        return None
    magnitudes = [abs(v) for v in normal]
    return ("sagittal", "coronal", "axial")[magnitudes.index(max(magnitudes))]


def _int_tag(ds, keyword: str, default: int) -> int:
    """An integer tag (IS/US), ``default`` when absent or empty; a value that is no integer is a malformed header."""
    try:
        value = ds.get(keyword)
    except Exception as exc:  # pydicom converts values lazily: a bad IS raises here, with any of several types
        raise DicomReadError("malformed-header", f"{keyword} cannot be read ({type(exc).__name__}: {exc})") from exc
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DicomReadError("malformed-header", f"{keyword} is {str(value)[:40]!r}, not an integer") from None


@functools.lru_cache(maxsize=None)
def _tags(keywords: tuple[str, ...]) -> tuple[Any, ...]:
    from pydicom.datadict import tag_for_keyword
    from pydicom.tag import Tag

    return tuple(Tag(tag_for_keyword(k)) for k in keywords)


def _tag_values(ds, tags: dict[str, str]) -> dict[str, Any]:
    """The present, readable tags of ``tags`` as JSON values; one unreadable value is left out, not fatal.

    Looked up by tag number (``tag in ds`` is a dict look-up) rather than ``ds.get(keyword)``, which resolves
    the keyword on every call: this was a third of the per-file time on small slices.
    """
    out: dict[str, Any] = {}
    for tag, (keyword, name) in zip(_tags(tuple(tags)), tags.items()):
        if tag not in ds:
            continue
        try:
            value = ds[tag].value
            if value not in (None, ""):
                out[name] = _plain(value)
        except Exception:  # a malformed optional tag (bad DS/IS text, wrong VR) is dropped from the metadata
            log.debug("dropped unreadable tag %s", keyword, exc_info=True)
    return out


def safe_metadata(ds, free_text: bool = False) -> dict[str, Any]:
    """Non-identifying metadata of ``ds`` (plus the free-text tags when ``free_text``).

    Never raises for an optional tag; raises :class:`DicomReadError` (``malformed-header``) only when a tag the
    pixel pipeline needs (NumberOfFrames) is not what the standard says.
    """
    meta = _tag_values(ds, SAFE_TAGS)
    tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsuid:
        meta["transfer_syntax"] = str(tsuid)
        meta["transfer_syntax_name"] = tsuid.name
    uid = ds.get("SeriesInstanceUID")
    if uid:
        meta["series_id"] = series_id(str(uid))
    meta["number_of_frames"] = _int_tag(ds, "NumberOfFrames", 1) or 1
    try:
        plane = plane_name(ds.get("ImageOrientationPatient"))
    except (TypeError, ValueError):
        plane = None
    if plane:
        meta["plane"] = plane
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned:
        meta["burned_in_annotation"] = burned
    if free_text:
        meta["free_text"] = _tag_values(ds, FREE_TEXT_TAGS)
    return meta


@dataclass
class DicomHeader:
    """What grouping and ordering need, read without the pixel data.

    ``dataset`` (the header as parsed, everything before the pixel data) and ``pixel_offset`` (where the pixel
    data element starts) let :func:`read_dicom` read only the rest of the file instead of parsing it all again;
    ``stat`` (size, mtime) tells whether the file changed in between. None where that cannot be done (a
    deflated dataset has no file offsets): then the pixel read parses the whole file.
    """

    path: Path
    series_key: str
    position: float | None  # along the slice normal, mm
    instance_number: int | None
    meta: dict[str, Any] = field(default_factory=dict)
    dataset: Any = field(default=None, repr=False, compare=False)
    pixel_offset: int | None = field(default=None, repr=False, compare=False)
    stat: tuple[int, int] | None = field(default=None, repr=False, compare=False)


_PIXEL_TAGS = (0x7FE00010, 0x7FE00009, 0x7FE00008)  # PixelData, DoubleFloatPixelData, FloatPixelData
# Those tags as they are written (group, then element, each in the file's byte order), by little-endianness
_PIXEL_TAG_BYTES = {little: {struct.pack("<HH" if little else ">HH", t >> 16, t & 0xFFFF) for t in _PIXEL_TAGS}
                    for little in (True, False)}


def _dcmread(path: Path | Any, stop_before_pixels: bool, specific_tags: list[str] | None = None):
    """``pydicom.dcmread`` of a path or an open binary file, its failures as :class:`DicomReadError`."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    # No warnings filter here: every caller runs under _quietly (or its own filter); entering one costs ~8 us,
    # which counted on small slices
    try:
        return pydicom.dcmread(path if hasattr(path, "read") else str(path),
                               stop_before_pixels=stop_before_pixels, specific_tags=specific_tags)
    except InvalidDicomError as exc:
        raise DicomReadError("not-dicom", str(exc)) from exc
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DicomReadError("malformed-header", f"{type(exc).__name__}: {exc}") from exc


def _header_dataset(path: Path):
    """The dataset up to the pixel data, the pixel data element's file offset (None: no pixel data at the top
    level, or a deflated dataset whose offsets are not file offsets), and (size, mtime) of the file read."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    try:
        fp = open(path, "rb")
    except OSError as exc:
        raise DicomReadError("malformed-header", f"{type(exc).__name__}: {exc}") from exc
    with fp:
        ds = _dcmread(fp, stop_before_pixels=True)
        tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if tsuid == DeflatedExplicitVRLittleEndian:
            return ds, None, None
        # pydicom stops reading with the file positioned at the pixel data element's tag (it rewinds over the
        # tag and length it peeked at); at the end of the file there is none
        offset = fp.tell()
        little = ds.original_encoding[1] is not False
        found = fp.read(4) in _PIXEL_TAG_BYTES[little]
        info = os.fstat(fp.fileno())
    return ds, offset if found else None, (info.st_size, info.st_mtime_ns)


def _with_pixels(header: DicomHeader):
    """The header's dataset completed with the rest of the file (the pixel data and anything after it), read
    from the pixel data element's offset; None when that cannot be done (then the caller reads the whole file).

    pydicom's ``read_dataset`` parses the elements from the offset in the header's encoding: one parse of each
    file for the header pass and the pixel read together, where two full ``dcmread`` calls parsed the header
    twice (that second parse was most of the per-file cost on small slices).
    """
    from pydicom.filereader import read_dataset

    ds = header.dataset
    if ds is None or header.pixel_offset is None or header.stat is None:
        return None
    try:
        with open(header.path, "rb") as fp:
            info = os.fstat(fp.fileno())
            if (info.st_size, info.st_mtime_ns) != header.stat:
                return None  # the file changed since its header was read
            fp.seek(header.pixel_offset)
            implicit, little = ds.original_encoding
            rest = read_dataset(fp, implicit, little, parent_encoding=ds.original_character_set)
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:  # as in _dcmread
        raise DicomReadError("malformed-header", f"{type(exc).__name__}: {exc}") from exc
    for tag in rest.keys():
        ds[tag] = rest.get_item(tag)  # raw: converted on first access, in ``ds``'s context (BitsAllocated ...)
    return ds


def _position(ds) -> float | None:
    """Where the slice lies along its normal (mm), or None when the geometry tags are absent or malformed."""
    try:
        normal = slice_normal(ds.get("ImageOrientationPatient"))
        ipp = ds.get("ImagePositionPatient")
        if normal is None or ipp is None or len(ipp) != 3:
            return None
        return float(sum(float(a) * float(b) for a, b in zip(normal, ipp)))
    except (TypeError, ValueError):
        return None


def _quietly(fn):
    """Run a reader with pydicom's warnings muted and its log records demoted to DEBUG (``--verbose``).

    pydicom warns *and* logs each non-conformant value it works around (``Invalid value for VR IS: '1A'``) and
    logs a traceback per frame a decoder rejects; the caller reports one skip line instead. Its loggers exist
    only once ``pydicom.pixels`` is imported, so the demotion is (re)applied after that import, in every
    process (worker processes import pydicom afresh).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import pydicom.pixels  # noqa: F401  (creates the decoder loggers)

        from clipzoo.biomed.quiet import quiet_library_logs

        quiet_library_logs()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)

    return wrapper


@_quietly
def read_header(path: str | Path, free_text: bool = False) -> DicomHeader:
    """What grouping needs, without reading the pixel data. Raises :class:`DicomReadError` only.

    A file without a SeriesInstanceUID is a series of its own, keyed by :func:`standalone_key` of ``path`` as
    given (distinct among the files a caller reads); an ingest source re-keys it by the name it gives the file.

    The header's dataset and the pixel data's offset travel in the result, so :func:`read_dicom` given this
    header reads only the pixel data (see :func:`_with_pixels`).
    """
    path = Path(path)
    ds, offset, stat = _header_dataset(path)
    if "Rows" not in ds:
        # DICOMDIR media directories, presentation states, SR and plans carry no pixels: said once, here. Pixel
        # data without the Image Pixel module describing it is a damaged image instead
        if offset is not None or (stat is None and any(
                k in _dcmread(path, stop_before_pixels=False) for k in ("PixelData", "FloatPixelData",
                                                                        "DoubleFloatPixelData"))):
            raise DicomReadError("malformed-header", "pixel data without an Image Pixel module (no Rows)")
        raise DicomReadError("not-image", "no pixel module (e.g. a DICOMDIR, structured report or RT plan)")
    meta = safe_metadata(ds, free_text=free_text)
    try:
        instance: int | None = _int_tag(ds, "InstanceNumber", -1)
    except DicomReadError:
        instance = -1
    return DicomHeader(
        path=path,
        series_key=meta.get("series_id") or standalone_key(path),
        position=_position(ds),
        instance_number=None if instance == -1 else instance,
        meta=meta,
        dataset=ds,
        pixel_offset=offset,
        stat=stat,
    )


def standalone_key(name: str | Path) -> str:
    """The series key of a file without a SeriesInstanceUID: a series of its own, named by a hash of ``name``.

    An ingest source passes the name its path policy gives the file (a key stem below the named input, already a
    hash with ``--source-paths hashed``), so the key stays when the export folder moves and is no hash of an
    absolute path one could guess and confirm. :func:`read_header` alone knows only the path it was given.
    """
    return f"file-{hashlib.sha256(str(name).encode()).hexdigest()[:16]}"


def read_series_key(path: str | Path) -> str | None:
    """The series key :func:`read_header` gives ``path`` when it has a SeriesInstanceUID, else None (a file that
    stands alone: its caller keys it with :func:`standalone_key`), read as cheaply as pydicom allows: only the
    SeriesInstanceUID is kept (``specific_tags``), nothing from the pixel data on is read, and no other value is
    converted. For planning work units (whole series together); a file that cannot be read stands alone too (its
    reader reports why). Only the one-way hash comes back, never the UID."""
    from pydicom.tag import Tag

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's notes on non-conformant values: its unit reports the file
            uid = _dcmread(Path(path), stop_before_pixels=True,
                           specific_tags=[Tag(0x0020000E)]).get("SeriesInstanceUID")
    except Exception:  # not DICOM, truncated, unreadable (any error type): its unit reads it and says why
        uid = None
    return series_id(str(uid)) if uid else None


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
            # the file's own first window needs no copy of the dataset (building one was 6% of a small slice)
            view = ds if source == "file" else _voi_dataset(ds, window)
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


def _decoder_available(tsuid) -> bool:
    """Whether an installed pydicom plugin can decode ``tsuid`` (then a failure means the data is damaged)."""
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(tsuid).is_available)
    except (NotImplementedError, ValueError, TypeError):
        return False


def decode(ds, path: Path | str = "<dataset>"):
    """``ds.pixel_array`` with the reasons a person can act on when it fails."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DicomReadError("not-image", "no pixel data (e.g. a structured report or presentation state)")
    tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsuid is None:
        raise DicomReadError("malformed-header", "no TransferSyntaxUID in the file meta information")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        name = getattr(tsuid, "name", str(tsuid))
        if _decoder_available(tsuid):
            # every installed plugin for this syntax tried and failed: the compressed stream itself is damaged
            first = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
            raise DicomReadError("corrupt-pixels", f"{name} data the installed decoders reject ({first})") from exc
        raise DicomReadError(
            "unsupported-syntax",
            f"{tsuid} ({name}): no installed pydicom decoder plugin handles it; "
            "for JPEG-LS/lossless JPEG install pylibjpeg-libjpeg or pyjpegls",
        ) from exc
    except (ValueError, AttributeError, KeyError, OSError, EOFError, TypeError) as exc:
        raise DicomReadError("corrupt-pixels", f"{type(exc).__name__}: {exc}") from exc


@_quietly
def read_dicom(path: str | Path, window=None, ct_window: str = "soft-tissue", free_text: bool = False,
               header: DicomHeader | None = None):
    """Read one DICOM file -> (``uint8 [frames, rows, columns]`` grey or ``[frames, rows, columns, 3]`` colour,
    safe metadata).

    ``window``: ``None`` (the file's VOI, then modality defaults), a preset name from :data:`CT_WINDOWS`, or
    ``(centre, width)`` in modality units (HU for CT). ``header``: this file's :func:`read_header` result (read
    with the same ``free_text``), whose metadata and parsed header are then reused instead of read again (only
    the pixel data is read; the header gives up its dataset to this call, so a second call reads the whole
    file). Raises :class:`DicomReadError` only.
    """
    import numpy as np

    path = Path(path)
    ds = None
    if header is not None:
        ds = _with_pixels(header)
        header.dataset = None  # handed over: a series' headers must not hold every slice's pixels
    if ds is None:
        ds = _dcmread(path, stop_before_pixels=False)
    meta = dict(header.meta) if header is not None else safe_metadata(ds, free_text=free_text)
    arr = decode(ds, path)
    frames = meta["number_of_frames"]
    samples = _int_tag(ds, "SamplesPerPixel", 1) or 1
    if frames == 1:
        arr = arr[None]
    pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    try:
        out = _display(arr, ds, pi, samples, meta, window, ct_window)
    except DicomReadError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # a LUT descriptor, window or bit depth that contradicts the pixel data
        raise DicomReadError("malformed-header", f"display transform failed ({type(exc).__name__}: {exc})") from exc
    return np.ascontiguousarray(out), meta


def _display(arr, ds, pi: str, samples: int, meta: dict[str, Any], window, ct_window: str):
    """Decoded stored values ``[frames, rows, columns(, 3)]`` -> display uint8 of the same shape."""
    import numpy as np
    from pydicom.pixels import apply_color_lut

    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        meta["voi"] = {"source": "palette", "lut_bits": bits}
        return _to_uint8(rgb.astype(np.float64) / float(2**bits - 1))
    if samples == 3:
        # pydicom's pixel_array already converted YBR_* to RGB (its as_rgb default).
        meta["voi"] = {"source": "color"}
        if arr.dtype != np.uint8:
            top = float(2 ** int(ds.BitsStored) - 1)
            return _to_uint8(arr.astype(np.float64) / top)
        return arr
    if samples == 1:
        unit, used = grey_to_unit(arr, ds, window=window, ct_window=ct_window)
        meta["voi"] = used
        return _to_uint8(unit)
    raise DicomReadError("unsupported-layout", f"SamplesPerPixel={samples} with PhotometricInterpretation {pi}")
