"""Pass 1 of curation: one compact :class:`Signature` per sample, computed shard by shard in worker processes.

A signature holds everything the steps decide on, so the driver never holds a decoded image:

- ``pixels``: SHA-256 of the *decoded* pixels (mode/dtype, shape and raw values), so a PNG and a lossless
  TIFF of one picture are exact duplicates while two encodings of one JPEG-compressed picture are not
  (those are near duplicates, found by ``phash``). Samples without an image hash their arrays (light curves,
  spectra, ...): an astro sample copied twice is an exact duplicate too.
- ``phash``: imagehash's 64-bit perceptual hash (DCT of a 32x32 greyscale), as an unsigned int.
- ``text``: the normalised primary caption (``txt``, else the first of ``captions.json``, else the JSON
  fields named in ``text_fields`` such as an astro class name); ``minhash``: its MinHash (datasketch) over
  character 5-grams, used for near-duplicate captions.
- filter features: caption characters and words, language and its probability (langid), image size;
  ``entries``: the metadata entries the text matches (balancing); ``score``: the CLIP score image<->caption.

Members: new shards name them ``KEY.png|jpg``, ``KEY.txt``, ``KEY.json``; older ones ``KEY.image.png``; a raw
tar sample therefore has an image under ``png``/``jpg``/... or ``image.png``/``image.jpg``/``image.npy``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

IMAGE_EXTS = ("png", "jpg", "jpeg", "tif", "tiff", "webp", "bmp")
SHINGLE = 5  # characters per shingle for caption MinHash: robust to small edits of short captions
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Unicode NFKC, lower case, runs of whitespace as one space, stripped (MetaCLIP's matching form)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def shingles(text: str) -> set[bytes]:
    """Character shingles of the normalised words (punctuation dropped), for MinHash."""
    joined = " ".join(_WORD.findall(normalize_text(text)))
    if len(joined) <= SHINGLE:
        return {joined.encode("utf-8")} if joined else set()
    return {joined[i:i + SHINGLE].encode("utf-8") for i in range(len(joined) - SHINGLE + 1)}


def minhash_of(text: str, num_perm: int):
    """datasketch MinHash of a caption's shingles, or ``None`` for an empty caption."""
    from datasketch import LeanMinHash, MinHash

    grams = shingles(text)
    if not grams:
        return None
    m = MinHash(num_perm=num_perm, seed=1)
    m.update_batch(list(grams))
    return LeanMinHash(m)


@dataclass
class SignatureSpec:
    """What pass 1 computes (only what the recipe's steps need)."""

    phash: bool = True
    num_perm: int = 0  # 0: no caption MinHash
    entries: list[str] = field(default_factory=list)  # normalised metadata entries (balance)
    langid: bool = False
    score_model: str | None = None
    score_batch: int = 64
    text_fields: tuple[str, ...] = ("class_name", "label")
    tracking_uri: str | None = None


@dataclass
class Signature:
    """One sample as the curation steps see it (small: no pixels)."""

    key: str
    order: int = 0  # global position (input set, shard, sample): the "first" of the keep rule
    unit: int = 0  # the work unit (input shard) it came from
    set_index: int = 0
    license: str = ""
    pixels: str | None = None
    phash: int | None = None
    width: int = 0
    height: int = 0
    text: str = ""
    n_chars: int = 0
    n_words: int = 0
    minhash: Any = None  # LeanMinHash
    lang: str | None = None
    lang_prob: float | None = None
    entries: tuple[int, ...] = ()
    score: float | None = None
    has_image: bool = False


# -- reading samples --------------------------------------------------------------------------------
def iter_shard(url: str, size: int | None = None, sha256: str | None = None) -> Iterator[dict[str, Any]]:
    """Raw (undecoded) samples of one shard, in file order, through core's one shard reader (its size checked
    against the manifest's when given)."""
    from clipzoo.core.data.shardset import ShardRef, shard_samples

    for sample in shard_samples(ShardRef(url, size, sha256)):
        yield {k: v for k, v in sample.items() if k != "__url__"}


def image_member(sample: dict[str, Any]) -> str | None:
    """The name of a sample's image member (old ``image.png`` or new ``png`` naming), or ``None``."""
    for name in sample:
        base, _, ext = name.rpartition(".") if "." in name else ("", "", name)
        if ext.lower() in IMAGE_EXTS and base in ("", "image"):
            return name
    return "image.npy" if "image.npy" in sample else None


def _as_text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _as_json(value: Any) -> Any:
    if isinstance(value, (bytes, str)):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def primary_text(sample: dict[str, Any], text_fields: Sequence[str] = ()) -> str:
    """The caption a pair is judged by: ``txt``, else the first ``captions.json`` text, else JSON fields."""
    if sample.get("txt"):
        return _as_text(sample["txt"]).strip()
    caps = _as_json(sample.get("captions.json"))
    if caps:
        first = caps[0]
        return str(first["text"] if isinstance(first, dict) else first).strip()
    meta = _as_json(sample.get("json")) or {}
    if isinstance(meta, dict):
        return " ".join(str(meta[f]) for f in text_fields if meta.get(f) not in (None, "")).strip()
    return ""


def decode_image(value: Any, name: str):
    """A member as ``(PIL image or None, pixel array)``: PIL for encoded images, numpy for ``.npy``."""
    import numpy as np
    from PIL import Image

    if name.endswith("npy"):
        arr = np.load(io.BytesIO(value), allow_pickle=False) if isinstance(value, bytes) else np.asarray(value)
        return None, arr
    if isinstance(value, bytes):
        with Image.open(io.BytesIO(value)) as im:
            im.load()
            image = im.copy()
    else:
        image = value
    return image, np.asarray(image)


def _array_digest(h, name: str, arr) -> None:
    import numpy as np

    arr = np.ascontiguousarray(arr)
    h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
    h.update(arr.tobytes())


def _phash_of_array(arr):
    """pHash of a ``CxHxW`` float (multispectral) or ``HxW[xC]`` array: band mean, min-max scaled to 8 bits."""
    import imagehash
    import numpy as np
    from PIL import Image

    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=0) if a.shape[0] < a.shape[-1] else a.mean(axis=-1)
    lo, hi = np.nanmin(a), np.nanmax(a)
    scaled = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
    return imagehash.phash(Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), mode="L"))


class _LangId:
    _ident = None

    @classmethod
    def classify(cls, text: str) -> tuple[str, float]:
        if cls._ident is None:  # langid's model ships inside its wheel: nothing is downloaded
            from langid.langid import LanguageIdentifier, model

            cls._ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        lang, prob = cls._ident.classify(text)
        return lang, float(prob)


def _matcher(entries: Sequence[str]):
    from clipzoo.core.curate.metadata import EntryMatcher

    cache = _matcher.__dict__.setdefault("cache", {})
    key = hash(tuple(entries))
    if key not in cache:
        cache.clear()
        cache[key] = EntryMatcher(entries)
    return cache[key]


def signature_of(sample: dict[str, Any], spec: SignatureSpec, *, order: int = 0, unit: int = 0,
                 set_index: int = 0) -> Signature:
    """The signature of one sample (raw tar members as bytes, or decoded values)."""
    import imagehash

    meta = _as_json(sample.get("json")) or {}
    sig = Signature(key=str(sample["__key__"]), order=order, unit=unit, set_index=set_index,
                    license=str(meta.get("license", "")) if isinstance(meta, dict) else "")
    h = hashlib.sha256()
    name = image_member(sample)
    if name is not None:
        image, arr = decode_image(sample[name], name)
        sig.has_image = True
        _array_digest(h, f"image/{image.mode if image is not None else 'array'}", arr)
        if image is not None:
            sig.width, sig.height = image.size
            ph = imagehash.phash(image) if spec.phash else None
        else:
            hw = arr.shape[1:] if arr.ndim == 3 and arr.shape[0] < arr.shape[-1] else arr.shape[:2]
            sig.height, sig.width = int(hw[0]), int(hw[1]) if len(hw) > 1 else 1
            ph = _phash_of_array(arr) if spec.phash else None
        sig.phash = int(str(ph), 16) if ph is not None else None
    else:
        import numpy as np

        arrays = sorted(n for n in sample if n.endswith(".npy") or n == "npy")
        for n in arrays:
            value = sample[n]
            _array_digest(h, n, np.load(io.BytesIO(value), allow_pickle=False) if isinstance(value, bytes) else value)
        if not arrays:
            h = None
    sig.pixels = h.hexdigest()[:32] if h is not None else None
    raw_text = primary_text(sample, spec.text_fields)
    sig.text = normalize_text(raw_text)
    sig.n_chars = len(sig.text)
    sig.n_words = len(_WORD.findall(sig.text))
    if spec.num_perm and sig.text:
        sig.minhash = minhash_of(sig.text, spec.num_perm)
    if spec.langid and sig.text:
        sig.lang, sig.lang_prob = _LangId.classify(raw_text)
    if spec.entries and sig.text:
        sig.entries = tuple(_matcher(spec.entries).match(sig.text))
    return sig


# -- CLIP score -------------------------------------------------------------------------------------
_MODELS: dict[tuple[str, str | None], Any] = {}


def _score_model(ref: str, tracking_uri: str | None):
    from clipzoo.core.registry.loading import load_model

    if (ref, tracking_uri) not in _MODELS:
        _MODELS.clear()  # one model per worker process
        _MODELS[(ref, tracking_uri)] = load_model(ref, tracking_uri=tracking_uri, device="cpu")
    return _MODELS[(ref, tracking_uri)]


def clip_scores(samples: list[dict[str, Any]], spec: SignatureSpec) -> list[float | None]:
    """Cosine similarity of each sample's image and primary caption under the score model (batched).

    ``None`` for a sample without an image or a caption: it cannot be scored.
    """
    import numpy as np

    from clipzoo.core.data.loader import _decoder

    model = _score_model(spec.score_model, spec.tracking_uri)
    decode = _decoder()
    scorable = [i for i, s in enumerate(samples) if image_member(s) is not None and primary_text(s)]
    out: list[float | None] = [None] * len(samples)
    if not scorable:
        return out
    decoded = []
    for i in scorable:
        d = decode(dict(samples[i]))
        name = image_member(d)
        if name != "image.npy" and not name.startswith("image."):
            d[f"image.{name}"] = d.pop(name)  # the model transform reads image.<ext>
        decoded.append(d)
    images, _ = model.encode_samples(decoded, "image", batch_size=spec.score_batch)
    texts = model.encode_texts([primary_text(samples[i]) for i in scorable], batch_size=spec.score_batch)
    sims = np.sum(images * texts, axis=1)
    for i, s in zip(scorable, sims):
        out[i] = float(s)
    return out


def shard_signatures(url: str, spec: SignatureSpec, unit: int, set_index: int, order0: int,
                     size: int | None = None) -> list[Signature]:
    """Pass 1 for one work unit (one input shard): every sample's signature, in file order."""
    samples = list(iter_shard(url, size)) if spec.score_model else None
    source = samples if samples is not None else iter_shard(url, size)
    sigs = [signature_of(s, spec, order=order0 + i, unit=unit, set_index=set_index) for i, s in enumerate(source)]
    if samples is not None:
        for sig, score in zip(sigs, clip_scores(samples, spec)):
            sig.score = score
    return sigs
