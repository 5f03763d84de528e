"""Ingest sources of the remote_sensing domain: ``captions`` (image-text corpora) and ``geotiff`` (chips).

``clipzoo ingest remote_sensing captions ucm_precomp rsicd_coco/captions_val2017.json --images imgs/ --out shards/``
``clipzoo ingest remote_sensing geotiff scene.tif --chip-size 256 --bands rgbn --nodata 0 --out chips/``

Module import stays light (the plugin imports it to register the classes); readers and heavy libraries
are imported inside :meth:`samples`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

from clipzoo.core.data.writer import safe_key
from clipzoo.core.ingest import IngestError, IngestReport, Source, expand_inputs

SPLITS = ("train", "test")  # clipzoo.remote_sensing.geotiff.SPLITS (not imported: it pulls numpy at plugin load)

log = logging.getLogger(__name__)


PICTURE_MODES = ("RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr")


def _per_input(value: str | None, n: int, option: str) -> list[str | None]:
    """``--lang en`` for every input, or ``--lang en,de`` one per input."""
    if value is None:
        return [None] * n
    parts = [p.strip() for p in str(value).split(",")]
    if len(parts) == 1:
        return parts * n
    if len(parts) != n:
        raise IngestError(f"{option} gives {len(parts)} values for {n} inputs: give one value, or one per input")
    return parts


def _corpus_name(path: Path) -> str:
    """``ucm_precomp`` -> ``ucm``; ``rsicd_coco/captions_val2017.json`` -> ``rsicd``; ``dataset_rsicd.json`` -> ``rsicd``."""
    base = path.parent.name if path.is_file() and path.suffix.lower() == ".json" else path.name
    if path.is_file() and path.stem.lower().startswith("dataset_"):
        base = path.stem[len("dataset_"):]
    for suffix in ("_precomp", "_coco", "_captions", "-captions"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return base.lower() or "captions"


class CaptionsSource(Source):
    domain = "remote_sensing"
    name = "captions"
    help = "RS image-caption corpora (AMFMN *_precomp folders, COCO-captions JSON, RSICD dataset_rsicd.json)"
    # --lang/--corpus give one value per input, and one image's captions in several corpora (languages) merge
    # into one sample: the inputs are read together, as one work unit
    joins_inputs = True
    worker_imports = ("PIL.Image", "PIL.PngImagePlugin", "PIL.JpegImagePlugin", "PIL.TiffImagePlugin",
                      "clipzoo.remote_sensing.captions")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--format", choices=("auto", "precomp", "coco", "rsicd"), default="auto",
                            help="caption layout (default: detected from each input)")
        parser.add_argument("--images", type=Path, help="folder holding the images (searched recursively; "
                            "any of .tif/.tiff/.jpg/.jpeg/.png, any case)")
        parser.add_argument("--captions-only", action="store_true",
                            help="write caption-only samples without looking for images (text benchmarks, tokenizers)")
        parser.add_argument("--lang", default="en", help="language tag of the captions: one, or one per input (en,de)")
        parser.add_argument("--corpus", help="corpus name(s) (default from the folder: ucm_precomp -> ucm); inputs "
                            "with the same corpus, split and image merge into one multilingual sample")
        parser.add_argument("--split", action="append", default=[], help="precomp split(s) to read (default: all)")
        parser.add_argument("--license", default=None, help="license recorded per sample (default: research use, "
                            "no explicit license, as for UCM/Sydney/RSICD/RSITMD)")
        parser.add_argument("--translate-model", type=Path, help="local MarianMT/NLLB folder: add machine "
                            "translations of the captions (offline)")
        parser.add_argument("--translate-lang", help="language tag of the translations (required with --translate-model)")
        parser.add_argument("--translate-from", default="en", help="translate captions of this language (default en)")
        parser.add_argument("--translate-code", help="NLLB-style forced target token (e.g. deu_Latn)")
        parser.add_argument("--translate-batch-size", type=int, default=16)
        parser.add_argument("--translate-max-length", type=int, default=128, help="max tokens per translation")


    # -- reading -------------------------------------------------------------------------------
    def _read_input(self, path: Path, lang: str, report: IngestReport):
        """(format, [(split, CaptionedImage)]) of one input; CaptionFormatError for a bad file."""
        from clipzoo.remote_sensing.captions import CaptionFormatError, precomp_splits, read_caption_json, read_precomp

        fmt = self.options.format
        if path.is_dir():
            if fmt not in ("auto", "precomp"):
                raise CaptionFormatError(f"{path}: a folder is read as precomp, but --format {fmt} was given")
            splits = precomp_splits(path)
            wanted = self.options.split or splits
            splits = [s for s in splits if s in wanted]
            if not splits:
                raise CaptionFormatError(f"{path}: no {{split}}_caps.txt + {{split}}_filename.txt pair"
                                         + (f" for split(s) {', '.join(wanted)}" if self.options.split else ""))
            return "precomp", [rec for s in splits for rec in read_precomp(path, s, lang)]
        if fmt == "precomp":
            raise CaptionFormatError(f"{path}: --format precomp needs the precomp folder, not a file")
        fmt, records = read_caption_json(path, lang=lang, fmt=fmt)
        return fmt, records

    def _merged_records(self, inputs: list[Path], report: IngestReport) -> "OrderedDict[tuple, dict]":
        from clipzoo.remote_sensing.captions import CaptionFormatError

        langs = _per_input(self.options.lang, len(inputs), "--lang")
        corpora = _per_input(self.options.corpus, len(inputs), "--corpus")
        merged: OrderedDict[tuple, dict] = OrderedDict()
        for path, lang, corpus in zip(inputs, langs, corpora):
            path = Path(path)
            if not path.exists():
                report.skip(path, "no such file or folder")
                continue
            report.input_seen(path)
            corpus = corpus or _corpus_name(path)
            try:
                fmt, records = self._read_input(path, lang or "en", report)
            except CaptionFormatError as exc:
                report.skip(path, str(exc))
                continue
            except OSError as exc:
                report.skip(path, f"unreadable: {exc}")
                continue
            report.count("formats", fmt)
            for rec in records:
                entry = merged.setdefault((corpus, rec.split, rec.image), {
                    "corpus": corpus, "split": rec.split, "image": rec.image, "image_id": rec.image_id,
                    "captions": [], "sources": [], "format": fmt,
                })
                entry["captions"].extend(rec.captions)
                if str(path) not in entry["sources"]:
                    entry["sources"].append(str(path))
        return merged

    def _translate(self, merged: "OrderedDict[tuple, dict]") -> dict | None:
        from clipzoo.remote_sensing.captions import Caption
        from clipzoo.remote_sensing.translate import TranslationError, Translator

        model = self.options.translate_model
        if model is None:
            return None
        target = self.options.translate_lang
        if not target:
            raise IngestError("--translate-model needs --translate-lang (the tag of the new captions, e.g. de)")
        try:
            tr = Translator(model, target, target_code=self.options.translate_code,
                            batch_size=self.options.translate_batch_size,
                            max_length=self.options.translate_max_length)
        except TranslationError as exc:
            raise IngestError(str(exc)) from None
        src_lang = self.options.translate_from
        todo = [(e, c.text) for e in merged.values() for c in list(e["captions"]) if c.lang == src_lang]
        out = tr.translate([t for _, t in todo])
        for (entry, _), text in zip(todo, out):
            entry["captions"].append(Caption(text, target))
            entry["translated"] = True
        info = {**tr.describe(), "source_lang": src_lang, "captions_translated": len(todo)}
        log.info("translated %d captions (%s -> %s) with %s", len(todo), src_lang, target, tr.name)
        return info

    # -- images --------------------------------------------------------------------------------
    @staticmethod
    def _load_image(path: Path) -> tuple[str, Any, tuple[int, int]]:
        """(sample field, value, (width, height)); JPEG/PNG bytes are kept as they are, TIFFs become PNG."""
        from PIL import Image

        suffix = path.suffix.lower()
        if suffix in (".jpg", ".jpeg", ".png"):
            data = path.read_bytes()
            import io

            with Image.open(io.BytesIO(data)) as im:
                im.load()  # decodes fully: a truncated file fails here, not in the trainer
                size = im.size
            return ("image.png" if suffix == ".png" else "image.jpg"), data, size
        with Image.open(path) as im:
            if im.mode not in PICTURE_MODES:
                raise ValueError(f"{im.mode} TIFF with {len(im.getbands())} band(s) is not an 8-bit picture; "
                                 "multispectral/16-bit rasters go through 'clipzoo ingest remote_sensing geotiff'")
            im.load()
            rgb = im.convert("RGB")
        return "image.png", rgb, rgb.size

    # -- samples -------------------------------------------------------------------------------
    def samples(self, inputs: list[Path | str], report: IngestReport) -> Iterator[dict[str, Any]]:
        from clipzoo.remote_sensing.captions import DEFAULT_LICENSE, KNOWN_CORPORA, ImageIndex

        images_dir, captions_only = self.options.images, self.options.captions_only
        if images_dir is None and not captions_only:
            raise IngestError("give --images DIR (where the corpus images are) or --captions-only")
        index = None
        if images_dir is not None and not captions_only:
            try:
                index = ImageIndex(images_dir)
            except FileNotFoundError as exc:
                raise IngestError(f"{exc}: check --images") from None
            log.info("found %d images under %s", len(index), images_dir)
        merged = self._merged_records([Path(i) for i in inputs], report)
        translation = self._translate(merged)
        if translation:
            report.notes["translation"] = translation
        missing: dict[str, list[str]] = {}
        for entry in merged.values():
            corpus, split, name = entry["corpus"], entry["split"], entry["image"]
            where = f"{entry['sources'][0]}::{name}"
            if not entry["captions"]:
                report.skip(where, "image has no captions in the corpus", kind="no_captions")
                continue
            sample: dict[str, Any] = {"__key__": safe_key(corpus, split, Path(name).stem)}
            meta = {
                "source": entry["sources"][0],
                "sources": entry["sources"],
                "format": entry["format"],
                "corpus": corpus,
                "corpus_citation": KNOWN_CORPORA.get(corpus, ""),
                "split": split,
                "image_name": name,
                "image_id": entry["image_id"],
                "license": self.options.license or DEFAULT_LICENSE,
                "langs": sorted({c.lang for c in entry["captions"]}),
                "n_captions": len(entry["captions"]),
            }
            if entry.get("translated"):
                meta["translation"] = {k: translation[k] for k in ("model", "model_type", "target_lang", "source_lang")}
            if index is not None:
                img_path = index.find(name)
                if img_path is None:
                    report.skip(where, f"image {name!r} not found under {images_dir} (any of .tif/.tiff/.jpg/"
                                f".jpeg/.png, any case)", kind="missing_image")
                    missing.setdefault(corpus, []).append(name)
                    continue
                try:
                    field_name, value, (w, h) = self._load_image(img_path)
                except (OSError, ValueError, SyntaxError) as exc:
                    report.skip(img_path, f"image cannot be decoded: {exc}", kind="image")
                    continue
                sample[field_name] = value
                meta.update(image_path=str(img_path), width=w, height=h)
            else:
                meta["image_path"] = None
            sample["captions.json"] = [c.to_dict() for c in entry["captions"]]
            sample["json"] = meta
            report.count("images_by_corpus", corpus)
            for c in entry["captions"]:
                report.count("captions_by_lang", c.lang)
            yield sample
        if missing:
            report.notes["missing_images"] = {k: {"count": len(v), "names": v} for k, v in missing.items()}


def _unique_stems(rasters: list[Path | str]) -> dict[str, str]:
    """Each raster's key stem: its file name, plus a hash of its path for a later raster of the same name."""
    stems: dict[str, str] = {}
    for path in rasters:
        stem = Path(str(path)).stem
        if stem in stems.values():  # two rasters with one name in different folders
            stem = f"{stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        stems[str(path)] = stem
    return stems


#: A work unit's part of a large raster: a band of its chip-grid rows, by index (``A`` to ``B - 1``)
_WINDOW_MARK = "#chip-rows="


def _window_item(path: Path | str, first: int, stop: int) -> str:
    return f"{path}{_WINDOW_MARK}{first}-{stop}"


def _parse_window(item: Path | str) -> tuple[Path | str, tuple[int, int] | None]:
    """``(raster, (first row, stop row))`` for a window item of :meth:`GeoTiffSource.units`, else ``(item, None)``."""
    text = str(item)
    base, mark, rows = text.rpartition(_WINDOW_MARK)
    first, dash, stop = rows.partition("-")
    if not mark or not dash or not (first.isdigit() and stop.isdigit()):
        return item, None
    return (base if base.startswith("/vsi") or "://" in base else Path(base)), (int(first), int(stop))


class GeoTiffSource(Source):
    domain = "remote_sensing"
    name = "geotiff"
    help = "GeoTIFF/COG rasters cut into normalised float32 chips (windowed reads, nodata masking, lon/lat)"
    # the process pool's forkserver preloads them, so a worker does not import rasterio on its first raster
    worker_imports = ("numpy", "rasterio", "rasterio.errors", "rasterio.windows", "tqdm",
                      "clipzoo.remote_sensing.geotiff")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--chip-size", type=int, default=256, help="chip side in pixels (default 256)")
        parser.add_argument("--stride", type=int, default=None, help="step between chips (default: chip size)")
        parser.add_argument("--bands", default="all", help="all | rgb | rgbn | comma list of indexes or names "
                            "(4,3,2 or red,green,blue,nir), in output order")
        parser.add_argument("--sensor", choices=("rgbn", "landsat8", "sentinel2"), help="declares the file's band "
                            "order so bands can be named (otherwise descriptions/colour interpretation are used)")
        parser.add_argument("--nodata", type=float, action="append", default=[], help="value that marks missing "
                            "pixels, in addition to the declared one (NaN is always missing)")
        parser.add_argument("--max-nodata", type=float, default=0.5, help="skip chips with more than this "
                            "fraction of missing pixels (default 0.5); all-missing chips are always skipped")
        parser.add_argument("--edge", choices=("drop", "pad"), default="drop", help="partial chips at the right/"
                            "bottom edge: drop them, or pad them with missing pixels")
        parser.add_argument("--offset", type=int, default=0, help="first chip's row/column offset in pixels (e.g. "
                            "half a stride for a held-out grid between the training chips)")
        parser.add_argument("--percentiles", type=float, nargs=2, default=[2.0, 98.0], metavar=("LOW", "HIGH"),
                            help="per-band stretch percentiles (default 2 98)")
        parser.add_argument("--normalize", choices=("percentile", "none"), default="percentile")
        parser.add_argument("--stats-pixels", type=int, default=1_000_000, help="rasters above this many pixels "
                            "get statistics from a decimated/overview read (bounded memory)")
        parser.add_argument("--gdal-cache-mb", type=int, default=256, help="GDAL block cache while chipping "
                            "(bounds memory together with the chip size; default 256)")
        parser.add_argument("--unit-chips", type=int, default=1024, metavar="N",
                            help="a raster of more chips is read as several work units of about N chips each "
                                 "(bands of chip rows), so --workers splits one large raster too; the shards are "
                                 "the same either way (default 1024)")
        parser.add_argument("--license", default="unknown (see the raster's provider)")
        g = parser.add_argument_group("spatial split", "hold out whole tile blocks, so held-out chips never overlap "
                                      "training windows: ingest once with --split train and once with --split test "
                                      "(same block/gap/fraction/seed; strides may differ)")
        g.add_argument("--split", choices=SPLITS, help="keep only this side's chips (default: every chip)")
        g.add_argument("--split-block", type=int, default=4, metavar="CHIPS", help="block side in chips (default 4)")
        g.add_argument("--split-gap", type=int, default=1, metavar="CHIPS", help="least distance between a training "
                       "window and a test block, in chips (default 1, at least 1)")
        g.add_argument("--split-test-fraction", type=float, default=0.25,
                       help="share of blocks held out (default 0.25)")
        g.add_argument("--split-seed", type=int, default=0, help="seed of the block draw (default 0)")


    def _block_split(self, size: int):
        """The :class:`~clipzoo.remote_sensing.geotiff.BlockSplit` asked for (None without ``--split``)."""
        from clipzoo.remote_sensing.geotiff import BlockSplit

        if not self.options.split:
            return None
        block, gap = self.options.split_block, self.options.split_gap
        if block < 1:
            raise IngestError(f"--split-block {block}: a block is at least 1 chip")
        if gap < 1:
            raise IngestError(f"--split-gap {gap}: held-out chips need a gap of at least 1 chip from training windows")
        try:
            return BlockSplit(block * size, gap * size, self.options.split_test_fraction,
                              self.options.split_seed)
        except ValueError as exc:
            raise IngestError(f"--split-test-fraction: {exc}") from None

    def _inputs(self, inputs: list[Path | str], report: IngestReport) -> Iterator[str | Path]:
        from clipzoo.remote_sensing.geotiff import gdal_path, is_remote

        local = []
        for item in inputs:
            if is_remote(item):
                yield gdal_path(item)
            else:
                local.append(item)
        yield from expand_inputs(local, (".tif", ".tiff"), report)

    def units(self, inputs: list[Path | str], unit_size: int, report: IngestReport) -> list[list[Path | str]]:
        """The rasters ``unit_size`` at a time, after the checks that span rasters, which one unit cannot make
        alone: a shard set holds one band layout (a raster whose selection has another band count is skipped
        here, naming the first raster's), and two rasters with one file name get distinct sample keys."""
        rasters, grids = self._one_band_layout(list(self._inputs(inputs, report)), report)
        self._stems = _unique_stems(rasters)  # travels to every unit's copy of the source
        items: list[Path | str] = []
        for path in rasters:
            items.extend(self._windows(path, grids.get(str(path))))
        return [items[i:i + unit_size] for i in range(0, len(items), unit_size)]

    def _windows(self, path: Path | str, grid: tuple[int, int] | None) -> list[Path | str]:
        """``path`` whole, or as bands of chip rows of about ``--unit-chips`` chips each when it has more
        (``grid``: its chip rows and columns; None when its header could not say)."""
        per_unit = self.options.unit_chips
        if per_unit < 1:
            raise IngestError(f"--unit-chips {per_unit}: a work unit holds at least 1 chip")
        if grid is None or grid[0] * grid[1] <= per_unit or grid[0] < 2:
            return [path]
        rows, cols = grid
        band = max(1, per_unit // max(cols, 1))
        return [_window_item(path, first, min(first + band, rows)) for first in range(0, rows, band)]

    def _grid(self, src) -> tuple[int, int] | None:
        """The raster's chip grid (rows, columns) under the chip options; None for options ``samples`` refuses."""
        from clipzoo.remote_sensing import geotiff as gt

        size, stride = self.options.chip_size, self.options.stride or self.options.chip_size
        try:
            return (len(gt.chip_offsets(src.height, size, stride, self.options.edge, self.options.offset)),
                    len(gt.chip_offsets(src.width, size, stride, self.options.edge, self.options.offset)))
        except ValueError:
            return None

    def _one_band_layout(self, rasters: list[Path | str],
                         report: IngestReport) -> tuple[list[Path | str], dict[str, tuple[int, int] | None]]:
        """The rasters of the first one's band layout (the others skipped), and each one's chip grid."""
        from rasterio.errors import RasterioError

        from clipzoo.remote_sensing import geotiff as gt

        sensor = gt.SENSORS[self.options.sensor] if self.options.sensor else None
        kept, first, grids = [], None, {}
        for path in rasters:
            try:
                with gt.open_raster(path) as src:  # the header only
                    n = len(gt.resolve_bands(self.options.bands, src, sensor))
                    grids[str(path)] = self._grid(src)
            except (gt.RasterError, RasterioError):
                kept.append(path)  # reading it in its unit skips it with the reason
                continue
            if first is not None and n != first[1]:
                report.input_seen(path)
                report.skip(path, f"{n} band(s) selected but {first[0]} gave {first[1]}: one shard set holds one "
                            "band layout (choose the same --bands for every raster, or ingest apart)")
                continue
            first = first or (str(path), n)
            kept.append(path)
        return kept, grids

    def samples(self, inputs: list[Path | str], report: IngestReport) -> Iterator[dict[str, Any]]:
        size = self.options.chip_size
        stride = self.options.stride or size
        max_nodata = self.options.max_nodata
        if size < 1 or stride < 1:
            raise IngestError("--chip-size and --stride must be positive")
        if not 0.0 <= max_nodata <= 1.0:
            raise IngestError("--max-nodata is a fraction between 0 and 1")
        split = self._block_split(size)
        rasters = self._rasters(inputs, report)
        stems = getattr(self, "_stems", None) or _unique_stems([p for p, _ in rasters])  # planned by units()
        for path, rows in rasters:
            if rows is None or rows[0] == 0:  # a raster split into windows is seen (and refused) once
                report.input_seen(path)
            stem = stems[str(path)]
            import rasterio

            with rasterio.Env(GDAL_CACHEMAX=self.options.gdal_cache_mb):
                yield from self._raster_samples(path, stem, size, stride, max_nodata, report, split, rows)

    def _rasters(self, inputs: list[Path | str], report: IngestReport) -> list[tuple[Path | str, tuple | None]]:
        """``(raster, chip rows or None)`` to read: a unit's window items as planned, in the plan's order, and
        every other input as named (folders expanded)."""
        if not any(_parse_window(item)[1] for item in inputs):
            return [(path, None) for path in self._inputs(inputs, report)]
        found: list[tuple[Path | str, tuple | None]] = []
        for item in inputs:
            base, rows = _parse_window(item)
            found += [(base, rows)] if rows else [(path, None) for path in self._inputs([item], report)]
        return found

    def _raster_samples(self, path, stem: str, size: int, stride: int, max_nodata: float, report: IngestReport,
                        split=None, rows: tuple[int, int] | None = None) -> Iterator[dict[str, Any]]:
        """The chips of one raster, or of the band ``rows`` (chip-grid row indexes) of it that one work unit reads.

        Every window computes the whole raster's statistics, split and notes (the same values in every unit, so
        the chips' bytes do not depend on the windows); only the first window reports the raster's own problems.
        """
        import numpy as np
        from rasterio.errors import RasterioError
        from tqdm import tqdm

        from clipzoo.remote_sensing import geotiff as gt

        def refuse(path, reason: str) -> None:  # a later window of a refused raster says nothing: the first did
            if rows is None or rows[0] == 0:
                report.skip(path, reason)

        percentiles = tuple(self.options.percentiles)
        try:
            src = gt.open_raster(path)
        except gt.RasterError as exc:
            refuse(path, str(exc))
            return
        with src:
            try:
                sensor = gt.SENSORS[self.options.sensor] if self.options.sensor else None
                bands = gt.resolve_bands(self.options.bands, src, sensor)
                nodata = gt.nodata_values(src, self.options.nodata)
                stats = gt.band_statistics(src, bands, nodata, percentiles, self.options.stats_pixels)
            except gt.RasterError as exc:
                refuse(path, str(exc))
                return
            except RasterioError as exc:
                refuse(path, f"read failed: {gt.error_text(exc)}")
                return
            if stats[0].valid_pixels == 0:
                refuse(path, f"no valid pixel (all NaN or nodata {nodata})")
                return
            edge, offset = self.options.edge, self.options.offset
            n_chips = gt.count_chips(src.width, src.height, size, stride, edge, offset)
            if n_chips == 0:
                refuse(path, f"raster {src.width}x{src.height} is smaller than --chip-size {size}; "
                             "use --edge pad or a smaller chip")
                return
            on_side, side = None, self.options.split
            split_meta = None
            if split is not None:
                try:
                    test_blocks = split.test_blocks(src.width, src.height)
                except gt.RasterError as exc:
                    refuse(path, str(exc))
                    return
                split_meta = {"side": side, **split.describe(src.width, src.height)}

                def on_this_side(row: int, col: int) -> bool:
                    return split.side(row, col, size, src.width, src.height, test_blocks) == side

                on_side = on_this_side

            row_offsets = gt.chip_offsets(src.height, size, stride, edge, offset)
            cols = gt.chip_offsets(src.width, size, stride, edge, offset)
            mine = row_offsets if rows is None else row_offsets[rows[0]:rows[1]]  # this unit's chip rows
            if on_side is not None:
                n_chips = sum(on_side(r, c) for r in row_offsets for c in cols)  # the whole raster's, for notes
                here = sum(on_side(r, c) for r in mine for c in cols)
                report.count("chips_outside_split", stem, len(mine) * len(cols) - here)  # other side, in the gap
            else:
                here = len(mine) * len(cols)
            in_window = None if rows is None else set(mine)

            def in_unit(row: int, col: int) -> bool:
                return (in_window is None or row in in_window) and (on_side is None or on_side(row, col))

            keep = None if in_window is None and on_side is None else in_unit
            normalize = self.options.normalize
            band_meta = [{"index": b, "name": src.descriptions[b - 1] or (sensor.bands[b - 1] if sensor else None)}
                         for b in bands]
            raster = {**gt.describe_raster(src), "bands": band_meta, "nodata_values": nodata,
                      "stats": [s.to_dict() for s in stats], "chips_total": n_chips, "split": split_meta}
            report.notes.setdefault("rasters", {})[str(path)] = raster
            norm_meta = {"method": normalize, "percentiles": list(percentiles),
                         "p_low": [s.p_low for s in stats], "p_high": [s.p_high for s in stats],
                         "mean": [s.mean for s in stats], "std": [s.std for s in stats]}
            chips = gt.iter_chips(src, bands, size, stride, nodata, edge, offset, keep=keep)
            written = 0
            try:
                for chip in tqdm(chips, total=here, desc=f"chips {stem}", unit="chip", leave=False):
                    where = f"{path}#row{chip.row_off}-col{chip.col_off}"
                    frac = chip.nodata_fraction
                    if frac >= 1.0:
                        report.skip(where, "chip is all nodata", kind="nodata")
                        continue
                    if frac > max_nodata:
                        report.skip(where, f"{frac:.1%} nodata > --max-nodata {max_nodata:g}", kind="nodata")
                        continue
                    if normalize == "percentile":
                        image = gt.normalize(chip.data, stats, chip.valid)
                    else:
                        image = chip.data.astype("float32", copy=True)
                        image[:, ~chip.valid] = 0.0
                    meta = {"source": str(path), "license": self.options.license, "dtype": src.dtypes[0],
                            "bands": band_meta, "sensor": self.options.sensor, "nodata_values": nodata,
                            "nodata_fraction": frac, "normalization": norm_meta, **chip.meta,
                            "location_encoding": f"unit sphere + sin/cos x {list(gt.LOCATION_SCALES)}"}
                    if side is not None:
                        meta["split"] = side
                    written += 1
                    report.count("chips_by_raster", stem)
                    location = gt.location_features(*chip.meta["center_lonlat"])
                    yield {"__key__": safe_key(stem, f"r{chip.row_off}", f"c{chip.col_off}"),
                           "image.npy": image, "location.npy": location,
                           "location_mask.npy": np.ones(location.shape, dtype=bool), "json": meta}
            except RasterioError as exc:
                report.skip(path, f"read failed after {written} chips: {gt.error_text(exc)}", kind="read_error")


class SimulatedScenesSource(Source):
    domain = "remote_sensing"
    name = "simulated"
    help = ("seeded simulated R,G,B,NIR scenes whose classes twin in RGB and differ in NIR (healthy/stressed "
            "vegetation, water/shadow, soil/dry grass), for the multispectral ablation")
    worker_imports = ("clipzoo.remote_sensing.simulate",)  # the process pool's forkserver preloads them

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("simulation")
        g.add_argument("--count", type=int, default=1200, help="scenes to generate (classes in turn; default 1200)")
        g.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same scenes)")
        g.add_argument("--chip-size", type=int, default=16, help="chip side in pixels (default 16)")
        g.add_argument("--bands", default="rgbn", help="rgbn | rgb | comma list of red,green,blue,nir, in output "
                       "order (the same seed gives the same scenes, so --bands rgb is the NIR-removed ablation)")

    def samples(self, inputs: list[Path | str], report: IngestReport) -> Iterator[dict[str, Any]]:
        from clipzoo.remote_sensing import simulate

        if inputs:
            raise IngestError("the simulated source takes no inputs (it generates scenes from --seed)")
        count, size = self.options.count, self.options.chip_size
        if count < 1 or size < 4:
            raise IngestError("--count must be at least 1 and --chip-size at least 4")
        bands = self.options.bands
        try:
            simulate.band_indexes(bands)
        except ValueError as exc:
            raise IngestError(f"--bands {bands}: {exc}") from None
        report.notes.update(classes=list(simulate.CLASSNAMES), bands=[simulate.BANDS[i] for i in
                                                                      simulate.band_indexes(bands)])
        for sample in simulate.samples(count, self.options.seed, size, bands):
            report.count("class", sample["json"]["class"])
            yield sample
