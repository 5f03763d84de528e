"""Seeded simulated multispectral scenes whose classes look alike in RGB and differ in near-infrared.

The point of the set is to show that a model which sees the NIR band learns something an RGB model cannot:
each class has a *twin* whose red, green and blue reflectances are drawn from the very same range, and the two
differ only in NIR (the physical reason each pair separates there is given next to it). An RGB-only model can
at best tell the three twin pairs apart (top-1 about 1/2 over six classes); a 4-band model can tell all six.

Surface reflectance ranges (fraction 0-1, band averages over Landsat-8 OLI-like bands B2 blue, B3 green,
B4 red, B5 NIR). Approximate values read from the typical spectra in the USGS Spectral Library Version 7
(Kokaly et al. 2017, USGS Data Series 1035), the ECOSTRESS/ASTER spectral library (Baldridge et al. 2009,
Remote Sens. Environ. 113:711; Meerdink et al. 2019, RSE 230:111196) and the cover-type curves in Jensen,
"Remote Sensing of the Environment" (2nd ed., 2007, ch. 11-12):

- green vegetation: blue 0.02-0.05, green 0.06-0.10 (the green peak), red 0.03-0.06 (chlorophyll absorption),
  NIR 0.38-0.50 (leaf mesophyll scattering, the "red edge" plateau);
- stressed vegetation (water stress / early senescence, fewer layers of turgid leaves): visible much like
  healthy canopy, NIR dropping to 0.16-0.26 as the mesophyll collapses and leaf area falls;
- clear deep water: blue 0.04-0.08 > green 0.03-0.07 > red 0.01-0.04, NIR 0.00-0.02 (water absorbs NIR);
- dark shadow over vegetated ground: visible as dark as water, but lit by diffuse skylight the vegetation in it
  still scatters NIR: 0.06-0.12;
- dry bare soil (loam): blue 0.08-0.12, green 0.12-0.17, red 0.16-0.22, NIR 0.22-0.28 (close to the soil line,
  NIR ~ 1.2-1.3 x red);
- dry (senescent) grass: visible close to the soil it grows on, NIR 0.32-0.40 (dead leaves still scatter NIR
  above the soil line).

Each scene adds what a real chip has: an illumination factor (0.9-1.1, sun angle / haze) on all bands, spatial
texture (a smooth random field, ~8% brightness variation shared by the bands plus ~3% per band) and sensor
noise (Gaussian, 0.004 reflectance + 2% of the signal, per pixel and band), clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

BANDS = ("red", "green", "blue", "nir")


@dataclass(frozen=True)
class Cover:
    """One surface class: its name (also the caption's words), twin group, and per-band reflectance range."""

    name: str
    twin: int  # classes with the same twin index share their red/green/blue ranges
    nir: tuple[float, float]


# Visible (red, green, blue) ranges shared by each twin pair.
TWIN_RGB: tuple[dict[str, tuple[float, float]], ...] = (
    {"red": (0.03, 0.06), "green": (0.06, 0.10), "blue": (0.02, 0.05)},  # vegetation
    {"red": (0.01, 0.04), "green": (0.03, 0.07), "blue": (0.04, 0.08)},  # water / shadow
    {"red": (0.16, 0.22), "green": (0.12, 0.17), "blue": (0.08, 0.12)},  # soil / dry grass
)
COVERS: tuple[Cover, ...] = (
    Cover("healthy vegetation", 0, (0.38, 0.50)),
    Cover("stressed vegetation", 0, (0.16, 0.26)),
    Cover("open water", 1, (0.00, 0.02)),
    Cover("dark shadow", 1, (0.06, 0.12)),
    Cover("bare soil", 2, (0.22, 0.28)),
    Cover("dry grass", 2, (0.32, 0.40)),
)
CLASSNAMES: tuple[str, ...] = tuple(c.name for c in COVERS)
CAPTION_TEMPLATES = (
    "a satellite image of {c}.",
    "an aerial photo of {c}.",
    "a remote sensing image of {c}.",
    "an overhead view of {c}.",
    "a multispectral chip of {c}.",
    "{c} seen from above.",
)
ILLUMINATION = (0.9, 1.1)
TEXTURE_SHARED, TEXTURE_BAND = 0.08, 0.03
NOISE_FLOOR, NOISE_GAIN = 0.004, 0.02


def band_indexes(bands: str | Sequence[str]) -> list[int]:
    """``"rgbn"`` / ``"rgb"`` / ``"red,nir"`` / a list of names -> indexes into :data:`BANDS`."""
    if isinstance(bands, str):
        names = {"rgbn": BANDS, "rgb": BANDS[:3], "all": BANDS}.get(bands.lower()) or \
            tuple(b.strip().lower() for b in bands.split(",") if b.strip())
    else:
        names = tuple(b.lower() for b in bands)
    unknown = [b for b in names if b not in BANDS]
    if unknown or not names:
        raise ValueError(f"unknown simulated band(s) {unknown or bands!r}: the simulated sensor has {', '.join(BANDS)}")
    return [BANDS.index(b) for b in names]


def _smooth_field(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """``n`` smooth zero-mean unit-std random fields ``[n, size, size]``: white noise low-passed in Fourier space
    (a Gaussian kernel of ~size/6 pixels), so texture has patches a few pixels across like real canopies/soils."""
    white = rng.standard_normal((n, size, size))
    f = np.fft.fftfreq(size)
    kernel = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) * (size / 3.0) ** 2)
    smooth = np.fft.ifft2(np.fft.fft2(white) * kernel).real
    smooth -= smooth.mean(axis=(1, 2), keepdims=True)
    return smooth / (smooth.std(axis=(1, 2), keepdims=True) + 1e-12)


def simulate_scene(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """One ``[4, size, size]`` float32 reflectance chip (bands :data:`BANDS`) of class ``COVERS[label]``."""
    cover = COVERS[label]
    ranges = {**TWIN_RGB[cover.twin], "nir": cover.nir}
    base = np.array([rng.uniform(*ranges[b]) for b in BANDS])
    base *= rng.uniform(*ILLUMINATION)
    fields = _smooth_field(rng, size, 1 + len(BANDS))
    texture = 1.0 + TEXTURE_SHARED * fields[0][None] + TEXTURE_BAND * fields[1:]
    signal = base[:, None, None] * texture
    noise = rng.standard_normal(signal.shape) * (NOISE_FLOOR + NOISE_GAIN * signal)
    return np.clip(signal + noise, 0.0, 1.0).astype(np.float32)


def simulate(count: int, seed: int = 0, size: int = 16, bands: str | Sequence[str] = "rgbn") -> Iterator[
        tuple[np.ndarray, int, str]]:
    """``count`` scenes ``(image [C, size, size] float32 reflectance, label, caption)``, classes balanced in turn.

    The same ``seed`` gives the same scenes whatever ``bands`` is: an RGB set is the 4-band set with NIR removed,
    which is what the RGB-vs-RGBN ablation needs.
    """
    if count < 1 or size < 4:
        raise ValueError("count must be >= 1 and the chip size >= 4 pixels")
    keep = band_indexes(bands)
    rng = np.random.default_rng(seed)
    for i in range(count):
        label = i % len(COVERS)
        image = simulate_scene(rng, label, size)
        template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
        yield image[keep], label, template.format(c=COVERS[label].name)


def band_statistics(count: int = 1200, seed: int = 0, size: int = 16) -> dict[str, tuple[float, float]]:
    """Per-band (mean, std) of the simulated sensor over a balanced set: the declared normalisation of
    ``rs-sim-tiny``/``rs-sim-rgb-tiny`` (their configs hold these numbers; a test keeps them in step)."""
    stack = np.stack([img for img, _, _ in simulate(count, seed, size)])
    return {b: (float(stack[:, i].mean()), float(stack[:, i].std())) for i, b in enumerate(BANDS)}


def samples(count: int, seed: int = 0, size: int = 16, bands: str | Sequence[str] = "rgbn",
            key_prefix: str = "sim") -> Iterator[dict[str, Any]]:
    """Scenes as shard samples: ``image.npy`` ``[C, H, W]``, caption ``txt``, class ``cls`` and ``json`` metadata
    naming the bands in order (so a model built on them knows which channel is which)."""
    from clipzoo.core.data.writer import safe_key

    names = [BANDS[i] for i in band_indexes(bands)]
    band_meta = [{"index": BANDS.index(n) + 1, "name": n} for n in names]
    for i, (image, label, caption) in enumerate(simulate(count, seed, size, bands)):
        yield {
            "__key__": safe_key(key_prefix, f"s{seed}", f"{i:06d}"),
            "image.npy": image,
            "txt": caption,
            "cls": label,
            "json": {"source": "simulated", "license": "CC0-1.0 (generated)", "simulation_seed": seed,
                     "index": i, "class": CLASSNAMES[label], "bands": band_meta, "sensor": "simulated-rgbn",
                     "units": "surface reflectance (0-1)"},
        }
