"""GeoTIFF chipping: windowed reads, band selection, nodata masking, percentile normalisation.

Everything is read through rasterio windows, so memory depends on the chip size and the statistics
sample, never on the raster size: a raster larger than RAM, or a cloud-optimised GeoTIFF over
``/vsicurl/``/``s3://``, is read the same way as a local file.

- :func:`open_raster` opens a local path or a GDAL remote path and checks it is georeferenced.
- :func:`resolve_bands` turns ``"rgb"``, ``"rgbn"``, ``"all"`` or ``"4,3,2"`` / ``"red,nir"`` into band indexes,
  using band descriptions, colour interpretation, or a declared :class:`Sensor`'s band order.
- :func:`band_statistics` computes per-band percentiles/mean/std over the valid pixels (full-resolution
  windowed pass for rasters up to ``max_pixels``, overviews or sampled windows above that).
- :func:`iter_chips` yields :class:`Chip` objects: a float32 ``[C, H, W]`` array, its valid mask and metadata
  (window, CRS, bounds, centre lon/lat in EPSG:4326).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

DEFAULT_PERCENTILES = (2.0, 98.0)
DEFAULT_STATS_PIXELS = 1_000_000
SAMPLE_WINDOW = 256  # block-aligned for the usual 256-px GeoTIFF/COG tiles


class RasterError(ValueError):
    """A raster that cannot be chipped (unreadable, not georeferenced, unknown band...): message says why."""


# -- sensors -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sensor:
    """A sensor's band order in its files, so bands can be asked for by name (torchgeo-style declaration)."""

    name: str
    bands: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)  # common name ("nir") -> band name ("B08")

    def index_of(self, name: str) -> int | None:
        name = self.aliases.get(name.lower(), name)
        lowered = [b.lower() for b in self.bands]
        return lowered.index(name.lower()) + 1 if name.lower() in lowered else None


SENSORS: dict[str, Sensor] = {
    s.name: s
    for s in (
        Sensor("rgbn", ("red", "green", "blue", "nir")),
        Sensor(
            "landsat8",
            tuple(f"B{i}" for i in range(1, 12)),
            {"coastal": "B1", "blue": "B2", "green": "B3", "red": "B4", "nir": "B5", "swir1": "B6",
             "swir2": "B7", "pan": "B8", "cirrus": "B9", "tir1": "B10", "tir2": "B11"},
        ),
        Sensor(
            "sentinel2",
            ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"),
            {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
             "rededge3": "B07", "nir": "B08", "nir08": "B8A", "watervapour": "B09", "cirrus": "B10",
             "swir1": "B11", "swir2": "B12"},
        ),
    )
}
BAND_PRESETS = {"rgb": ("red", "green", "blue"), "rgbn": ("red", "green", "blue", "nir")}


# -- opening -----------------------------------------------------------------------------------
def gdal_path(item: str | Path) -> str:
    """The string GDAL should open: local paths as they are, remote ones (``/vsicurl/``, ``s3://``) intact.

    ``Path("s3://b/k")`` collapses the double slash (``s3:/b/k``); this undoes that so a remote raster
    given through a ``Path`` still opens.
    """
    s = str(item)
    for scheme in ("s3:", "gs:", "az:", "http:", "https:"):
        marker = scheme + "/"
        i = s.find(marker)
        if i >= 0 and not s.startswith(scheme + "//", i):
            s = s[:i] + scheme + "//" + s[i + len(marker):]
    return s


def error_text(exc: BaseException) -> str:
    """rasterio's read errors say 'See previous exception'; bring GDAL's own message forward."""
    parts = [str(exc)]
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(parts) < 4:
        parts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    kept = [p for p in dict.fromkeys(parts) if p and "previous exception" not in p]
    return ": ".join(p.rstrip(".") for p in kept) or type(exc).__name__


def is_remote(item: str | Path) -> bool:
    s = gdal_path(item)
    return s.startswith("/vsi") or "://" in s


def open_raster(path: str | Path):
    """Open a raster with rasterio and check it can be chipped; raises :class:`RasterError`."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    location = gdal_path(path)
    try:
        with warnings.catch_warnings():  # we say it ourselves, once, with what to do
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(location)
    except RasterioIOError as exc:
        raise RasterError(f"unreadable raster: {exc}") from None
    if src.crs is None or src.transform.is_identity:
        src.close()
        raise RasterError(
            "not georeferenced (no CRS or geotransform): chips need bounds and lon/lat; georeference it first"
            " (e.g. gdal_translate -a_srs EPSG:xxxx -a_ullr ...)"
        )
    if np.dtype(src.dtypes[0]).kind == "c":
        src.close()
        raise RasterError(f"complex dtype {src.dtypes[0]} is not supported (take amplitude/phase first)")
    return src


# -- bands -------------------------------------------------------------------------------------
def band_names(src, sensor: Sensor | None = None) -> list[set[str]]:
    """Names each band answers to: its description, its colour interpretation, the sensor's band name."""
    names: list[set[str]] = []
    for i in range(src.count):
        n = set()
        if src.descriptions[i]:
            n.add(src.descriptions[i].lower())
        ci = src.colorinterp[i].name.lower()
        if ci not in ("undefined", "gray", "grey"):
            n.add(ci)
        if sensor is not None and i < len(sensor.bands):
            n.add(sensor.bands[i].lower())
            n.update(alias for alias, b in sensor.aliases.items() if b == sensor.bands[i])
        names.append(n)
    return names


def resolve_bands(spec: str, src, sensor: Sensor | None = None) -> list[int]:
    """Band indexes (1-based, in the order asked) for ``"all"``, ``"rgb"``, ``"rgbn"`` or a comma list."""
    spec = (spec or "all").strip().lower()
    if sensor is not None and len(sensor.bands) != src.count:
        raise RasterError(f"sensor {sensor.name!r} has {len(sensor.bands)} bands but the raster has {src.count}")
    if spec == "all":
        return list(range(1, src.count + 1))
    wanted = BAND_PRESETS.get(spec) or tuple(t.strip() for t in spec.split(",") if t.strip())
    names = band_names(src, sensor)
    out = []
    for token in wanted:
        if token.isdigit():
            idx = int(token)
            if not 1 <= idx <= src.count:
                raise RasterError(f"band {idx} out of range: the raster has bands 1..{src.count}")
        else:
            matches = [i + 1 for i, n in enumerate(names) if token in n]
            if not matches:
                known = ", ".join(f"{i + 1}={'/'.join(sorted(n)) or '?'}" for i, n in enumerate(names))
                raise RasterError(
                    f"no band named {token!r} (bands: {known}); name bands by index (--bands 1,2,3) or declare"
                    f" the sensor (--sensor {'/'.join(SENSORS)})"
                )
            idx = matches[0]
        out.append(idx)
    return out


def nodata_values(src, extra: Sequence[float] = ()) -> list[float]:
    """The declared nodata value (if any) plus the ones named by the user; NaN is always missing too."""
    values = [] if src.nodata is None or math.isnan(src.nodata) else [float(src.nodata)]
    values += [float(v) for v in extra if float(v) not in values]
    return values


def valid_mask(data: np.ndarray, nodata: Sequence[float]) -> np.ndarray:
    """``[H, W]`` bool, True where no band of ``data`` ``[C, H, W]`` is NaN or a nodata value."""
    bad = np.zeros(data.shape[1:], dtype=bool)
    if data.dtype.kind == "f":
        bad |= np.isnan(data).any(axis=0)
    for v in nodata:
        bad |= (data == v).any(axis=0)
    return ~bad


def has_mask_band(src) -> bool:
    """True when GDAL marks missing pixels with an internal/external mask or an alpha band (not nodata)."""
    from rasterio.enums import MaskFlags

    flags = src.mask_flag_enums
    return any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags) and \
        not any(MaskFlags.nodata in f for f in flags)


def read_valid(src, bands: Sequence[int], nodata: Sequence[float], window=None, out_shape=None, resampling=None):
    """Read ``bands`` (``[C, H, W]``, native dtype) and their valid-pixel mask: not NaN, not a nodata value,
    and not masked by the file's mask band or alpha band (COGs often carry an internal mask)."""
    kwargs = {"window": window}
    if out_shape is not None:
        kwargs.update(out_shape=(len(bands), *out_shape), resampling=resampling)
    data = src.read(list(bands), **kwargs)
    ok = valid_mask(data, nodata)
    if has_mask_band(src):
        mask_kwargs = {"window": window, **({"out_shape": out_shape, "resampling": resampling} if out_shape else {})}
        ok &= src.dataset_mask(**mask_kwargs) > 0
    return data, ok


# -- statistics --------------------------------------------------------------------------------
@dataclass
class BandStats:
    band: int
    valid_pixels: int
    min: float
    max: float
    mean: float
    std: float
    p_low: float
    p_high: float
    percentiles: tuple[float, float]
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


def sample_windows(width: int, height: int, max_pixels: int, size: int | None = None) -> list:
    """About ``max_pixels`` worth of ``size``-square windows spread on a regular grid over the raster."""
    from rasterio.windows import Window

    size = size or SAMPLE_WINDOW
    n = max(1, max_pixels // (size * size))
    cols_fit, rows_fit = max(1, width // size), max(1, height // size)
    n_cols = max(1, min(cols_fit, round(math.sqrt(n * width / height))))
    n_rows = max(1, min(rows_fit, math.ceil(n / n_cols)))
    col_offs = np.linspace(0, max(0, width - size), n_cols).astype(int) // size * size
    row_offs = np.linspace(0, max(0, height - size), n_rows).astype(int) // size * size
    return [Window(int(c), int(r), min(size, width - int(c)), min(size, height - int(r)))
            for r in sorted(set(row_offs.tolist())) for c in sorted(set(col_offs.tolist()))]


def band_statistics(
    src,
    bands: Sequence[int],
    nodata: Sequence[float] = (),
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    max_pixels: int = DEFAULT_STATS_PIXELS,
) -> list[BandStats]:
    """Per-band statistics of the valid pixels (a pixel is valid when none of ``bands`` is missing there).

    Rasters of at most ``max_pixels`` pixels are read strip by strip at full resolution (exact values).
    Larger ones are estimated from about ``max_pixels`` pixels: an overview read when the file has
    overviews (COGs), else full-resolution windows sampled on a regular grid (a decimated read without
    overviews would decode every block). Memory and I/O stay bounded whatever the raster size.
    """
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    bands = list(bands)
    total = src.width * src.height
    if total <= max_pixels:
        method = "exact (full-resolution windowed pass)"
        rows = max(1, min(src.height, (1 << 20) // max(1, src.width)))
        parts: list[list[np.ndarray]] = [[] for _ in bands]
        for row in range(0, src.height, rows):
            win = Window(0, row, src.width, min(rows, src.height - row))
            data, ok = read_valid(src, bands, nodata, window=win)
            for i in range(len(bands)):
                parts[i].append(data[i][ok])  # native dtype: at most max_pixels values per band
    elif src.overviews(bands[0]):
        scale = math.sqrt(max_pixels / total)
        h, w = max(1, int(src.height * scale)), max(1, int(src.width * scale))
        method = f"overview read {w}x{h} of {src.width}x{src.height}"
        data, ok = read_valid(src, bands, nodata, out_shape=(h, w), resampling=Resampling.nearest)
        parts = [[data[i][ok]] for i in range(len(bands))]
        del data
    else:
        # No overviews: a decimated read would visit every block, so sample whole windows on a regular grid.
        parts = [[] for _ in bands]
        windows = sample_windows(src.width, src.height, max_pixels)
        for win in windows:
            data, ok = read_valid(src, bands, nodata, window=win)
            for i in range(len(bands)):
                parts[i].append(data[i][ok])
        method = f"{len(windows)} sampled {SAMPLE_WINDOW}x{SAMPLE_WINDOW} windows of {src.width}x{src.height}"
    stats = []
    for i, band in enumerate(bands):
        v = np.concatenate(parts[i]) if parts[i] else np.empty(0)
        parts[i] = []  # one band's float64 copy at a time
        if v.size == 0:
            stats.append(BandStats(band, 0, *(float("nan"),) * 6, tuple(percentiles), method))
            continue
        v = v.astype(np.float64)
        lo, hi = np.percentile(v, percentiles)
        stats.append(BandStats(band, int(v.size), float(v.min()), float(v.max()), float(v.mean()), float(v.std()),
                               float(lo), float(hi), tuple(percentiles), method))
    return stats


def normalize(data: np.ndarray, stats: Sequence[BandStats], valid: np.ndarray) -> np.ndarray:
    """Percentile stretch per band to [0, 1] (clipped); missing pixels become 0. Returns float32."""
    out = np.empty(data.shape, dtype=np.float32)
    for i, s in enumerate(stats):
        span = s.p_high - s.p_low
        band = (data[i].astype(np.float64) - s.p_low) / (span if span > 0 else 1.0)
        out[i] = np.clip(band, 0.0, 1.0)
    out[:, ~valid] = 0.0
    return out


# -- chips -------------------------------------------------------------------------------------
def chip_offsets(length: int, size: int, stride: int, edge: str = "drop", offset: int = 0) -> list[int]:
    """Chip start offsets along one axis, from ``offset``. ``drop``: only whole chips; ``pad``: also a last
    partial chip."""
    if size < 1 or stride < 1 or offset < 0:
        raise ValueError("chip size and stride must be positive, the offset not negative")
    if edge == "drop":
        return list(range(offset, length - size + 1, stride))
    if edge == "pad":
        return [o for o in range(offset, length, stride) if o == offset or o + size - stride < length]
    raise ValueError(f"edge must be 'drop' or 'pad', not {edge!r}")


@dataclass
class Chip:
    data: np.ndarray  # float32 [C, size, size], raw values, NaN outside the raster
    valid: np.ndarray  # bool [size, size]
    row_off: int
    col_off: int
    size: int
    meta: dict

    @property
    def nodata_fraction(self) -> float:
        return 1.0 - float(self.valid.mean())


def chip_metadata(src, row_off: int, col_off: int, size: int) -> dict:
    """Window, CRS, bounds (raster CRS) and the centre's lon/lat (EPSG:4326) of one chip."""
    from rasterio.warp import transform as warp_transform

    t = src.transform
    corners = [t @ (col_off + dc, row_off + dr) for dc in (0, size) for dr in (0, size)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    left, bottom, right, top = min(xs), min(ys), max(xs), max(ys)
    cx, cy = t @ (col_off + size / 2, row_off + size / 2)
    lon, lat = warp_transform(src.crs, "EPSG:4326", [cx], [cy])
    return {
        "window": {"col_off": col_off, "row_off": row_off, "width": size, "height": size},
        "crs": src.crs.to_string(),
        "bounds": [left, bottom, right, top],
        "center": [cx, cy],
        "center_lonlat": [float(lon[0]), float(lat[0])],
    }


# -- spatial split ---------------------------------------------------------------------------
SPLITS = ("train", "test")


@dataclass(frozen=True)
class BlockSplit:
    """Train/test split of a raster's chips by square tile blocks, with a guard gap between the two sides.

    The raster is cut into ``block``-pixel blocks from its top-left corner; a seeded draw makes
    ``round(test_fraction * blocks)`` of them test blocks (at least one, never all). A test chip lies wholly
    inside test blocks; a train chip lies wholly inside train blocks *and* at least ``gap`` pixels (Chebyshev
    distance) from every test block. So no training window overlaps, touches or comes within ``gap`` pixels of
    a held-out window, whatever the two grids' strides and offsets (neighbouring chips share texture and
    objects; random chip splits leak them: Roberts et al. 2017, "Cross-validation strategies for data with
    temporal, spatial, hierarchical, or phylogenetic structure", Ecography 40:913). The assignment depends only
    on the raster size and these four numbers, so the train and test ingests of one raster agree.
    """

    block: int  # pixels
    gap: int  # pixels
    test_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.block < 1 or self.gap < 0:
            raise ValueError("the split block must be positive and the gap not negative")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"the test fraction is between 0 and 1 (exclusive), not {self.test_fraction}")

    def grid(self, width: int, height: int) -> tuple[int, int]:
        """Blocks down and across."""
        return math.ceil(height / self.block), math.ceil(width / self.block)

    def test_blocks(self, width: int, height: int) -> frozenset[tuple[int, int]]:
        """The (block row, block column) pairs held out for test."""
        rows, cols = self.grid(width, height)
        n = rows * cols
        if n < 2:
            raise RasterError(f"raster {width}x{height} is a single {self.block}-px split block: nothing to hold "
                              "out; use a smaller --split-block")
        k = min(n - 1, max(1, round(self.test_fraction * n)))
        picked = np.random.default_rng(self.seed).choice(n, size=k, replace=False)
        return frozenset((int(i) // cols, int(i) % cols) for i in picked)

    def _blocks(self, r0: int, c0: int, r1: int, c1: int, width: int, height: int) -> Iterator[tuple[int, int]]:
        """Blocks touched by pixel rows ``[r0, r1)`` and columns ``[c0, c1)``, clipped to the raster."""
        r0, c0, r1, c1 = max(0, r0), max(0, c0), min(height, r1), min(width, c1)
        for br in range(r0 // self.block, (r1 - 1) // self.block + 1):
            for bc in range(c0 // self.block, (c1 - 1) // self.block + 1):
                yield br, bc

    def side(self, row: int, col: int, size: int, width: int, height: int,
             test: frozenset[tuple[int, int]]) -> str | None:
        """``"test"``, ``"train"`` or None (the chip straddles the two sides or lies in the train side's gap)."""
        if all(b in test for b in self._blocks(row, col, row + size, col + size, width, height)):
            return "test"
        g = self.gap
        if not any(b in test for b in self._blocks(row - g, col - g, row + size + g, col + size + g, width, height)):
            return "train"
        return None

    def describe(self, width: int, height: int) -> dict:
        rows, cols = self.grid(width, height)
        return {"method": "tile blocks", "block_px": self.block, "gap_px": self.gap,
                "test_fraction": self.test_fraction, "seed": self.seed, "grid": [rows, cols],
                "test_blocks": sorted([list(b) for b in self.test_blocks(width, height)])}


def iter_chips(src, bands: Sequence[int], size: int, stride: int, nodata: Sequence[float] = (),
               edge: str = "drop", offset: int = 0, keep=None) -> Iterator[Chip]:
    """Chips of ``src`` in row-major order, each read through its own window (bounded memory).

    Pixels outside the raster (``edge="pad"``) are NaN and count as missing. ``keep(row, col)`` (optional)
    picks the windows to read: the others are never read.
    """
    from rasterio.windows import Window

    bands = list(bands)
    for row in chip_offsets(src.height, size, stride, edge, offset):
        for col in chip_offsets(src.width, size, stride, edge, offset):
            if keep is not None and not keep(row, col):
                continue
            h, w = min(size, src.height - row), min(size, src.width - col)
            raw, ok = read_valid(src, bands, nodata, window=Window(col, row, w, h))
            valid = np.zeros((size, size), dtype=bool)
            valid[:h, :w] = ok
            data = np.full((len(bands), size, size), np.nan, dtype=np.float32)
            data[:, :h, :w] = raw
            yield Chip(data, valid, row, col, size, chip_metadata(src, row, col, size))


def count_chips(width: int, height: int, size: int, stride: int, edge: str = "drop", offset: int = 0) -> int:
    return len(chip_offsets(width, size, stride, edge, offset)) * len(chip_offsets(height, size, stride, edge, offset))


LOCATION_SCALES = (1, 16, 256, 4096, 65536)
LOCATION_FEATURES = 3 + 4 * len(LOCATION_SCALES)


def location_features(lon: float, lat: float, scales: Sequence[float] = LOCATION_SCALES) -> np.ndarray:
    """A chip's position as model input (SatCLIP/GeoCLIP-style location encoder input), float32 ``[23]``.

    The point on the unit sphere (x, y, z: continuous across the antimeridian and the poles), then
    ``sin``/``cos`` of longitude and latitude (radians) times each scale: scale 1 places a chip on the
    globe, scale 65536 separates chips ~40 m apart (multi-scale sinusoids, as in NeRF/GeoCLIP encodings).
    """
    lam, phi = math.radians(lon), math.radians(lat)
    feats = [math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)]
    for s in scales:
        feats += [math.sin(s * lam), math.cos(s * lam), math.sin(s * phi), math.cos(s * phi)]
    return np.asarray(feats, dtype=np.float32)


def describe_raster(src) -> dict:
    """Raster-level facts for the manifest."""
    return {
        "size": [src.width, src.height],
        "count": src.count,
        "dtype": src.dtypes[0],
        "crs": src.crs.to_string() if src.crs else None,
        "bounds": list(src.bounds),
        "res": list(src.res),
        "declared_nodata": src.nodata,
    }

