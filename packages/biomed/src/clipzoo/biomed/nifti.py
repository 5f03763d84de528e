"""NIfTI volumes through MONAI: load, reorient to RAS, resample, scale intensities, cut 2-D images.

Axis conventions (one for the whole package, see README):
- a volume is ``float32 [X, Y, Z]`` in RAS+ voxel order after :func:`load_volume` (x increases towards the
  patient's right, y towards anterior, z towards superior);
- a 2-D image is ``[rows, columns]`` = ``(height, width)``, the order pydicom and PIL use. Slices are shown in
  radiological convention: axial and coronal with the patient's right on the image's left, anterior (axial)
  or superior (coronal, sagittal) at the top, sagittal with anterior on the left. This is the same display an
  axial DICOM slice with the standard orientation gets.
- MONAI's ``LoadImage`` returns 2-D files (PNG/JPEG/DICOM) transposed, ``(width, height[, channels])``;
  :func:`load_2d_monai` transposes them back so MONAI-read and PIL/pydicom-read images agree.

4-D volumes (fMRI, multi-phase CT): the 4th axis becomes MONAI's channel axis; one frame (by index) or the
mean over frames is kept, and the choice is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLANES = ("axial", "coronal", "sagittal")
PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
#: Intensity range scaled to 0..1 when no window is given: these percentiles of the volume (MRI has arbitrary units)
DEFAULT_PERCENTILES = (0.5, 99.5)


# kind -> the phrase a skip reason of that kind starts with (cf. clipzoo.biomed.dicom.SKIP_KINDS)
SKIP_KINDS = {
    "not-volume": "not an image volume",
    "missing-data": "image data file missing",
    "unreadable": "unreadable NIfTI",
}

# NIfTI-1/2 header fields that hold free text: kept only with ``header_text=True`` (``--free-text``).
HEADER_TEXT_FIELDS = ("descrip", "aux_file", "intent_name")


class NiftiReadError(ValueError):
    """The file cannot be read as a volume; ``kind`` is a key of :data:`SKIP_KINDS`."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{SKIP_KINDS[kind]}: {detail}")
        self.kind = kind


def _first_line(exc: BaseException) -> str:
    """An exception as one line: MONAI packs every reader's traceback into its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _screen(path: Path, header_text: bool) -> dict[str, Any]:
    """Open ``path`` with nibabel (header only) and refuse what is not a voxel volume, with the reason.

    MONAI's ``LoadImage`` would try five readers on such a file and raise an error holding five tracebacks;
    nibabel says in one step what the file is (a CIFTI-2 matrix, a header whose .img is missing). Returns the
    header text fields when ``header_text``.
    """
    import nibabel as nib
    from nibabel.spatialimages import SpatialImage

    try:
        img = nib.load(str(path))
    except FileNotFoundError as exc:
        missing = Path(exc.filename or "").name or str(exc)
        raise NiftiReadError("missing-data", f"{missing} not found beside the header") from exc
    except Exception as exc:  # nibabel raises ImageFileError, ValueError, OSError, EOFError... for damaged files
        raise NiftiReadError("unreadable", _first_line(exc)) from exc
    if not isinstance(img, SpatialImage) or type(img).__name__.startswith("Cifti"):
        raise NiftiReadError("not-volume", f"{type(img).__name__} (e.g. a CIFTI-2 matrix), not a voxel volume")
    if len(img.shape) not in (3, 4):
        raise NiftiReadError("not-volume", f"expected a 3-D or 4-D volume, got shape {tuple(img.shape)}")
    file_map = getattr(img, "file_map", {})
    data_file = getattr(file_map.get("image"), "filename", None)
    if data_file and not Path(data_file).is_file():
        raise NiftiReadError("missing-data", f"{Path(data_file).name} not found beside the header")
    if not header_text:
        return {}
    out = {}
    for name in HEADER_TEXT_FIELDS:
        try:
            value = img.header.get(name)
        except (AttributeError, KeyError, ValueError):
            continue
        text = bytes(value).split(b"\0", 1)[0].decode("latin-1").strip() if value is not None else ""
        if text:
            out[name] = text
    return out


@dataclass
class Volume:
    data: Any  # numpy float32 [X, Y, Z], RAS voxel order
    spacing: tuple[float, float, float]
    affine: Any  # numpy 4x4, after reorientation/resampling
    meta: dict[str, Any] = field(default_factory=dict)


def _quiet_monai():
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
    logging.getLogger("monai").setLevel(logging.ERROR)
    from clipzoo.biomed.quiet import quiet_library_logs

    quiet_library_logs()


def load_volume(
    path: str | Path,
    axcodes: str = "RAS",
    spacing: tuple[float, float, float] | None = None,
    frame: int | str = 0,
    header_text: bool = False,
) -> Volume:
    """Load a 3-D/4-D NIfTI with MONAI ``LoadImage`` -> ``Orientation(axcodes)`` -> optional ``Spacing``.

    ``frame``: for 4-D files, the index of the frame to keep or ``"mean"``. ``header_text``: record the header's
    free-text fields (:data:`HEADER_TEXT_FIELDS`) in ``meta["free_text"]``. Raises :class:`NiftiReadError` only.
    """
    import numpy as np

    path = Path(path)
    text = _screen(path, header_text)
    _quiet_monai()
    from monai.transforms import LoadImage, Orientation, Spacing

    try:
        img = LoadImage(image_only=True, ensure_channel_first=True, reader="NibabelReader")(str(path))
    except Exception as exc:  # MONAI wraps nibabel's errors in several types
        raise NiftiReadError("unreadable", _first_line(exc)) from exc
    if img.ndim != 4:
        raise NiftiReadError("not-volume", f"expected a 3-D or 4-D volume, got shape {tuple(img.shape)}")
    original_shape = [int(s) for s in img.shape[1:]]
    n_frames = int(img.shape[0])
    meta: dict[str, Any] = {"original_shape": original_shape, "frames": n_frames}
    if n_frames > 1:
        if frame == "mean":
            img = img.mean(dim=0, keepdim=True)
        else:
            index = int(frame)
            if not -n_frames <= index < n_frames:
                raise NiftiReadError("not-volume", f"frame {index} out of range: the volume has {n_frames} frames")
            img = img[index : index + 1]
        meta["frame"] = frame
    img = Orientation(axcodes=axcodes)(img)
    if spacing is not None:
        img = Spacing(pixdim=spacing, mode="bilinear")(img)
    affine = np.asarray(img.affine, dtype=np.float64)
    voxel = tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    data = np.asarray(img[0], dtype=np.float32)
    meta.update({"orientation": axcodes, "shape": list(data.shape), "spacing": [round(v, 6) for v in voxel]})
    if header_text:
        meta["free_text"] = text
    return Volume(data=data, spacing=voxel, affine=affine, meta=meta)


def scale_intensity(data, window: tuple[float, float] | None = None,
                    percentiles: tuple[float, float] = DEFAULT_PERCENTILES):
    """Intensities -> [0, 1] with MONAI: a (centre, width) window (``ScaleIntensityRange``, e.g. HU for CT) or
    the volume's own percentiles (``ScaleIntensityRangePercentiles``, for MRI's arbitrary units)."""
    import numpy as np

    _quiet_monai()
    from monai.transforms import ScaleIntensityRange, ScaleIntensityRangePercentiles

    if window is not None:
        center, width = window
        t = ScaleIntensityRange(a_min=center - width / 2, a_max=center + width / 2, b_min=0.0, b_max=1.0, clip=True)
    else:
        t = ScaleIntensityRangePercentiles(lower=percentiles[0], upper=percentiles[1], b_min=0.0, b_max=1.0, clip=True)
    return np.asarray(t(np.asarray(data, dtype=np.float32)[None])[0], dtype=np.float32)


def slice_count(shape, plane: str) -> int:
    return int(shape[PLANE_AXIS[plane]])


def to_display(plane_array, plane: str):
    """A 2-D plane of a RAS volume (the two remaining axes, in order) -> radiological ``[rows, columns]``."""
    import numpy as np

    # axial (x, y): rows = y descending (anterior top), cols = x descending (patient right on the left)
    # coronal (x, z): rows = z descending (superior top), cols = x descending
    # sagittal (y, z): rows = z descending, cols = y descending (anterior on the left)
    return np.ascontiguousarray(plane_array[::-1, ::-1].T)


def extract_slice(data, plane: str, index: int):
    """Slice ``index`` along ``plane``'s normal of a RAS ``[X, Y, Z]`` volume, as a display ``[rows, columns]``."""
    import numpy as np

    axis = PLANE_AXIS[plane]
    return to_display(np.take(data, index, axis=axis), plane)


def project(data, plane: str, kind: str = "mip"):
    """A per-volume 2-D view along ``plane``'s normal: maximum (``mip``) or mean (``mean``) intensity projection."""
    axis = PLANE_AXIS[plane]
    if kind == "mip":
        flat = data.max(axis=axis)
    elif kind == "mean":
        flat = data.mean(axis=axis)
    else:
        raise ValueError(f"unknown view {kind!r}; use mip or mean")
    return to_display(flat, plane)


def load_2d_monai(path: str | Path, reader: str | None = None):
    """Read a 2-D image (PNG/JPEG/DICOM) with MONAI ``LoadImage`` in this package's ``(rows, columns[, C])`` order.

    MONAI returns ``(width, height[, C])`` for these files (e.g. a 1955-row, 1841-column X-ray comes back
    1841x1955); this swaps the two spatial axes back so the array equals PIL's / pydicom's.
    """
    import numpy as np

    _quiet_monai()
    from monai.transforms import LoadImage

    arr = np.asarray(LoadImage(image_only=True, reader=reader)(str(path)))
    return np.ascontiguousarray(np.swapaxes(arr, 0, 1))
