"""Readers for the caption corpora of remote-sensing image-text retrieval.

Three layouts are in use in the field, all holding several captions per image:

- AMFMN ``*_precomp`` folders (UCM-captions, Sydney-captions, RSICD, RSITMD): ``{split}_caps.txt`` holds
  one caption per line and ``{split}_filename.txt`` names, on the same line number, the image it
  describes. :func:`read_precomp`.
- COCO-captions JSON (``{"images": [{id, file_name}], "annotations": [{image_id, caption}]}``).
  :func:`read_coco_captions`.
- The RSICD release's ``dataset_rsicd.json`` (Karpathy-split style: ``{"images": [{"filename", "split",
  "sentences": [{"raw", ...}]}]}``). :func:`read_rsicd_json`.

Each reader returns :class:`CaptionedImage` records (one per image, captions in file order) and raises
:class:`CaptionFormatError` with the offending path and line/entry when the file cannot be trusted.
Nothing here needs the CLI; :class:`clipzoo.remote_sensing.sources.CaptionsSource` adapts it to samples.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = (".tif", ".tiff", ".jpg", ".jpeg", ".png")
FORMATS = ("precomp", "coco", "rsicd")

# What the field's corpora are and how to cite them; the manifest and model cards carry it.
KNOWN_CORPORA = {
    "ucm": "UCM-captions (Qu et al. 2016) on UC Merced Land Use (Yang & Newsam 2010)",
    "sydney": "Sydney-captions (Qu et al. 2016)",
    "rsicd": "RSICD (Lu et al. 2017)",
    "rsitmd": "RSITMD (Yuan et al. 2021)",
}
DEFAULT_LICENSE = "research use; no explicit license"


class CaptionFormatError(ValueError):
    """A caption file that cannot be read as the layout it claims to be (message names path and place)."""


@dataclass
class Caption:
    text: str
    lang: str = "en"

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text, "lang": self.lang}


@dataclass
class CaptionedImage:
    """One image of a corpus and all its captions, in file order."""

    image: str  # file name as written in the corpus (e.g. "91.tif", "square_221.jpg")
    captions: list[Caption] = field(default_factory=list)
    split: str = ""
    image_id: str = ""  # the corpus's own id where it has one (COCO image id, RSICD imgid)


# -- AMFMN precomp ------------------------------------------------------------------------------
def precomp_splits(folder: str | Path) -> list[str]:
    """Splits of a precomp folder that have both ``{split}_caps.txt`` and ``{split}_filename.txt``."""
    folder = Path(folder)
    caps = {p.name[: -len("_caps.txt")] for p in folder.glob("*_caps.txt")}
    names = {p.name[: -len("_filename.txt")] for p in folder.glob("*_filename.txt")}
    return sorted(caps & names)


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CaptionFormatError(f"{path}: not UTF-8 text ({exc})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # a trailing blank line is an editor artefact, not a caption
        lines.pop()
    return [line.strip() for line in lines]


def read_precomp(folder: str | Path, split: str = "test", lang: str = "en") -> list[CaptionedImage]:
    """Read ``{split}_caps.txt`` + ``{split}_filename.txt`` of an AMFMN precomp folder.

    Line i of the caption file describes the image named on line i of the filename file (UCM, Sydney,
    RSITMD); all lines of one image become one record, in first-appearance order. AMFMN's RSICD split
    instead names each image once for k consecutive captions (5): accepted when the caption count is an
    exact multiple and no name repeats. Any other length difference, or an empty caption or name, raises
    :class:`CaptionFormatError` (a shifted alignment would pair every later caption with the wrong image).
    """
    folder = Path(folder)
    caps_path, names_path = folder / f"{split}_caps.txt", folder / f"{split}_filename.txt"
    for p in (caps_path, names_path):
        if not p.is_file():
            raise CaptionFormatError(f"{p}: missing; a precomp split needs both {split}_caps.txt and {split}_filename.txt")
    caps, names = _read_lines(caps_path), _read_lines(names_path)
    per_image = 1
    if len(caps) != len(names):
        # AMFMN's rsicd_precomp names each image once for its 5 caption lines; accept that layout only when it
        # is unambiguous (an exact multiple and every name distinct), never a truncated one-per-caption file.
        if names and len(caps) % len(names) == 0 and len(set(names)) == len(names):
            per_image = len(caps) // len(names)
        else:
            raise CaptionFormatError(
                f"{caps_path} has {len(caps)} lines but {names_path.name} has {len(names)}: line i of one must name"
                " the image of line i of the other (or each image once for a fixed number of captions); fix the"
                " files (no caption was read)"
            )
    records: OrderedDict[str, CaptionedImage] = OrderedDict()
    for lineno, cap in enumerate(caps, start=1):
        name = names[(lineno - 1) // per_image]
        if not cap or not name:
            which, where = (names_path, (lineno - 1) // per_image + 1) if not name else (caps_path, lineno)
            raise CaptionFormatError(f"{which}:{where}: empty line inside the file")
        rec = records.setdefault(name, CaptionedImage(image=name, split=split))
        rec.captions.append(Caption(cap, lang))
    return list(records.values())


# -- JSON layouts -------------------------------------------------------------------------------
def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise CaptionFormatError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise CaptionFormatError(f"{path}: not UTF-8 JSON ({exc})") from None


def detect_json_format(data, path: str | Path = "") -> str:
    """``"coco"`` or ``"rsicd"`` from the structure of a parsed caption JSON."""
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        if isinstance(data.get("annotations"), list):
            return "coco"
        if data["images"] and isinstance(data["images"][0], dict) and "sentences" in data["images"][0]:
            return "rsicd"
    raise CaptionFormatError(
        f"{path}: JSON is neither COCO captions ('images' + 'annotations') nor RSICD ('images' with 'sentences')"
    )


def _split_from_name(path: Path) -> str:
    stem = path.stem.lower()
    for split in ("train", "val", "test"):
        if split in stem:
            return split
    return ""


def read_coco_captions(path: str | Path, lang: str = "en", data=None) -> list[CaptionedImage]:
    """COCO-captions JSON -> one record per image (images without annotations are kept, caption-less).

    An annotation may carry its own ``"lang"``; otherwise ``lang`` applies. The split is taken from the
    file name (``captions_val2017.json`` -> ``val``).
    """
    path = Path(path)
    data = _load_json(path) if data is None else data
    if detect_json_format(data, path) != "coco":
        raise CaptionFormatError(f"{path}: not COCO captions (no 'annotations' list)")
    split = _split_from_name(path)
    records: OrderedDict[object, CaptionedImage] = OrderedDict()
    for i, img in enumerate(data["images"]):
        try:
            records[img["id"]] = CaptionedImage(image=str(img["file_name"]), split=split, image_id=str(img["id"]))
        except (KeyError, TypeError):
            raise CaptionFormatError(f"{path}: images[{i}] lacks 'id' or 'file_name'") from None
    for i, ann in enumerate(data["annotations"]):
        try:
            rec = records[ann["image_id"]]
            text = str(ann["caption"]).strip()
        except KeyError as exc:
            raise CaptionFormatError(f"{path}: annotations[{i}] refers to unknown image or lacks {exc}") from None
        except TypeError:
            raise CaptionFormatError(f"{path}: annotations[{i}] is not an object") from None
        rec.captions.append(Caption(text, str(ann.get("lang", lang))))
    return list(records.values())


def read_rsicd_json(path: str | Path, lang: str = "en", data=None) -> list[CaptionedImage]:
    """RSICD ``dataset_rsicd.json`` (images with ``filename``, ``split``, ``sentences[].raw``)."""
    path = Path(path)
    data = _load_json(path) if data is None else data
    if detect_json_format(data, path) != "rsicd":
        raise CaptionFormatError(f"{path}: not the RSICD layout (images with 'sentences')")
    out = []
    for i, img in enumerate(data["images"]):
        try:
            name = img.get("filename") or img["file_name"]
            caps = [Caption(str(s["raw"]).strip(), str(s.get("lang", lang))) for s in img["sentences"]]
        except (KeyError, TypeError, AttributeError):
            raise CaptionFormatError(f"{path}: images[{i}] lacks 'filename' or 'sentences[].raw'") from None
        out.append(CaptionedImage(image=str(name), captions=caps, split=str(img.get("split", "")),
                                  image_id=str(img.get("imgid", ""))))
    return out


def read_caption_json(path: str | Path, lang: str = "en", fmt: str = "auto") -> tuple[str, list[CaptionedImage]]:
    """Read a COCO or RSICD caption JSON, detecting which unless ``fmt`` names it."""
    path = Path(path)
    data = _load_json(path)
    fmt = detect_json_format(data, path) if fmt == "auto" else fmt
    reader = {"coco": read_coco_captions, "rsicd": read_rsicd_json}[fmt]
    return fmt, reader(path, lang=lang, data=data)


# -- images ------------------------------------------------------------------------------------
class ImageIndex:
    """Finds a corpus's image name under a folder whatever the extension or its case.

    Corpora disagree with their imagery about extensions (UCM-captions names ``91.tif`` while many
    copies ship ``.jpg``/``.png``), so a name is matched exactly first, then by stem against any of
    :data:`IMAGE_EXTENSIONS`, case-insensitively. The folder is scanned once.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self._by_name: dict[str, Path] = {}
        self._by_stem: dict[str, Path] = {}
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
                self._by_name.setdefault(p.name.lower(), p)
                self._by_stem.setdefault(p.stem.lower(), p)

    def __len__(self) -> int:
        return len(self._by_name)

    def find(self, name: str) -> Path | None:
        base = Path(name).name.lower()
        return self._by_name.get(base) or self._by_stem.get(Path(base).stem)
