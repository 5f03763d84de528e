"""2-D image helpers shared by the sources: any PIL-readable image -> RGB, downscaling, near-duplicate detection.

Conversions to RGB (figures come as every kind of TIFF):
- palette (``P``/``PA``) -> RGB through the palette; transparency composited onto white, as do ``RGBA``/``LA``;
- ``CMYK`` -> RGB with the embedded ICC profile when there is one, PIL's formula otherwise;
- 16-bit / 32-bit integer and float grey (``I;16``, ``I;16B``, ``I``, ``F``) -> 8 bits by stretching the image's
  own min..max (scientific TIFFs rarely use the full 16-bit range);
- ``1``, ``L``, ``YCbCr``, ``LAB``, ``HSV`` -> RGB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

DEFAULT_MAX_SIDE = 1024
NEAR_DUPLICATE_DISTANCE = 4  # max pHash Hamming distance (of 64 bits) of a near-duplicate image


class ImageReadError(ValueError):
    """The image cannot be decoded (truncated, not an image, too many pixels)."""


def _alpha_on_white(img):
    from PIL import Image

    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img):
    """Convert an opened PIL image of any mode to 8-bit RGB (see the module docstring for the rules)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        return _alpha_on_white(img)
    if mode == "CMYK":
        icc = img.info.get("icc_profile")
        if icc:
            try:
                from PIL import ImageCms

                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            except Exception:  # a broken profile: fall back to the plain conversion below
                pass
        return img.convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _grey8(img).convert("RGB")
    return img.convert("RGB")


def _grey8(img):
    """16-bit / 32-bit integer and float grey -> 8-bit ``L`` by stretching the image's own min..max."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(img, dtype=np.float64)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8), "L")


def to_display(img, keep_grey: bool = False):
    """:func:`to_rgb`, except that with ``keep_grey`` an opaque grey image becomes 8-bit ``L`` (one channel:
    an X-ray stored as RGB would only triple the bytes)."""
    if keep_grey and "transparency" not in img.info:
        if img.mode == "L":
            return img
        if img.mode == "1":
            return img.convert("L")
        if img.mode.startswith("I") or img.mode == "F":
            return _grey8(img)
    return to_rgb(img)


@dataclass
class LoadedImage:
    image: Any  # PIL.Image in RGB (or L, see load_rgb's keep_grey)
    original_size: tuple[int, int]  # (width, height) before any downscaling
    original_mode: str
    format: str | None

    @property
    def downscaled(self) -> bool:
        return self.image.size != self.original_size

    def metadata(self) -> dict[str, Any]:
        return {
            "width": self.image.size[0],
            "height": self.image.size[1],
            "original_width": self.original_size[0],
            "original_height": self.original_size[1],
            "original_mode": self.original_mode,
            "original_format": self.format,
            "downscaled": self.downscaled,
        }


def load_rgb(source: str | Path | bytes | IO[bytes], max_side: int | None = DEFAULT_MAX_SIDE,
             keep_grey: bool = False) -> LoadedImage:
    """Decode an image to RGB (grey images to ``L`` when ``keep_grey``), shrinking it so its longer side is at
    most ``max_side`` (``None``: never).

    Raises :class:`ImageReadError` with the decoder's reason for anything unreadable.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # damaged TIFF/EXIF tags warn and are skipped by PIL; a damaged image body still raises below
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            with Image.open(source) as img:
                original_size, original_mode, fmt = img.size, img.mode, img.format
                if max_side and fmt == "JPEG":  # decode JPEGs at a reduced scale directly
                    img.draft("L" if keep_grey and img.mode == "L" else "RGB", (max_side, max_side))
                img.load()
                rgb = to_display(img, keep_grey)
                if rgb is img:
                    rgb = img.copy()
        if max_side and max(rgb.size) > max_side:
            rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"image too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"not a readable image: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    return LoadedImage(rgb, original_size, original_mode, fmt)


class NearDuplicateIndex:
    """Perceptual-hash (pHash) index: which earlier image is within ``max_distance`` bits of this one.

    A BK-tree over Hamming distance keeps look-ups sub-linear on large corpora.
    """

    def __init__(self, max_distance: int = NEAR_DUPLICATE_DISTANCE, hash_size: int = 8):
        self.max_distance = max_distance
        self.hash_size = hash_size
        self._root: list | None = None  # node: [hash, key, {distance: child}]
        self.size = 0

    def phash(self, image):
        import imagehash

        return imagehash.phash(image, hash_size=self.hash_size)

    def find(self, h) -> tuple[str, int] | None:
        """The closest indexed key within ``max_distance`` of hash ``h`` and its distance, or None."""
        best: tuple[str, int] | None = None
        stack = [self._root] if self._root is not None else []
        while stack:
            node = stack.pop()
            d = int(h - node[0])
            if d <= self.max_distance and (best is None or d < best[1]):
                best = (node[1], d)
            for edge, child in node[2].items():
                if d - self.max_distance <= edge <= d + self.max_distance:
                    stack.append(child)
        return best

    def add(self, h, key: str) -> None:
        self.size += 1
        if self._root is None:
            self._root = [h, key, {}]
            return
        node = self._root
        while True:
            d = int(h - node[0])
            child = node[2].get(d)
            if child is None:
                node[2][d] = [h, key, {}]
                return
            node = child

    def check(self, image, key: str) -> tuple[str, tuple[str, int] | None]:
        """Hash ``image``; return its hex hash and the near duplicate found (then it is not added)."""
        h = self.phash(image)
        hit = self.find(h)
        if hit is None:
            self.add(h, key)
        return str(h), hit
