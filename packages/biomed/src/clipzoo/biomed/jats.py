"""JATS/NLM article XML -> article metadata and figure-caption records.

The parser is safe for untrusted input: lxml with entity resolution, DTD loading and network access off
(no XXE, no billion laughs, no fetching of the ``JATS-archivearticle1.dtd`` the DOCTYPE names). For speed it
parses only the article's skeleton (front matter and figures, see below) where the file allows; ``strict=True``
parses, and so checks, every byte.

A *figure* is a ``<fig>`` element (inside ``<fig-group>`` too) whose image is a direct ``<graphic>`` (or one in
``<alternatives>``). Not figures: ``<table-wrap>`` graphics, ``<inline-graphic>``, formula graphics
(``<disp-formula>``/``<inline-formula>``) and ``<supplementary-material>``.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
ALI_LICENSE_REF = "{http://www.niso.org/schemas/ali/1.0/}license_ref"

# Elements whose <fig>/<graphic> descendants are not figures of the article.
_NOT_FIGURE_CONTAINERS = {"table-wrap", "supplementary-material", "disp-formula", "inline-formula", "chem-struct-wrap"}
_NOT_FIGURE_CONTAINER_TAGS = tuple(name.encode() for name in sorted(_NOT_FIGURE_CONTAINERS))


class JatsError(ValueError):
    """The file is not readable JATS: malformed/truncated XML or another root element."""


@dataclass
class Figure:
    fig_id: str
    label: str
    caption: str
    href: str | None  # <graphic xlink:href>, as written (often without extension)


@dataclass
class Article:
    pmcid: str | None
    pmid: str | None
    doi: str | None
    title: str
    journal: str
    year: int | None
    license: str  # normalised family: cc-by, cc-by-nc, cc0, pd, ... or "unknown"
    license_url: str | None
    figures: list[Figure] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        """The article fields every figure sample carries."""
        data = asdict(self)
        data.pop("figures")
        return data

    @property
    def ident(self) -> str | None:
        """The best stable identifier: PMCID, then PMID, then DOI."""
        if self.pmcid:
            return self.pmcid
        if self.pmid:
            return f"pmid{self.pmid}"
        if self.doi:
            return f"doi-{self.doi}"
        return None


# -- text ----------------------------------------------------------------------------------------------
_WS = re.compile(r"\s+")
# After whitespace is collapsed, the space before closing punctuation and after an opening bracket goes. Few
# texts have one (7 of the corpus's 446 captions), so cheap tests come first: patterns that start with a literal,
# which the regex engine scans for directly (~20x faster than the look-arounds or a leading character class, which
# cost a try at every position).
_SPACE_AROUND_PUNCT = re.compile(r" (?=[,.;:!?)\]])|(?<=[(\[]) ")
_SPACE_THEN_CLOSER = re.compile(r" [,.;:!?)\]]")
_PAREN_THEN_SPACE = re.compile(r"\( ")
_BRACKET_THEN_SPACE = re.compile(r"\[ ")


def _needs_punctuation_fix(text: str) -> bool:
    return bool(_SPACE_THEN_CLOSER.search(text) or _PAREN_THEN_SPACE.search(text) or _BRACKET_THEN_SPACE.search(text))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _fix_punctuation(text: str) -> str:
    return _SPACE_AROUND_PUNCT.sub("", text) if _needs_punctuation_fix(text) else text


def _flat_itertext(element) -> str:
    return "" if element is None else _collapse("".join(element.itertext()))


def clean_text(element) -> str:
    """Flatten inline markup (italic, sub/sup, xref, ext-link ...) into readable, whitespace-normalised text.

    An unresolved entity reference stays as its source text (``&name;``), as lxml's ``itertext`` gives it.
    """
    return _fix_punctuation(_flat_itertext(element))


def _flat_function(etree, root) -> Callable[[Any], str]:
    """An element's text with whitespace collapsed (no punctuation fix yet), for the elements of ``root``'s tree.

    lxml's C text serialiser (``tostring(method="text")``) gives the same text as ``itertext`` in an eighth of the
    time, except for entity references: it would write an entity's value (or nothing) where ``itertext`` keeps
    ``&name;``. A tree holding any entity reference (an internal DTD subset, an entity the unloaded DTD defines)
    keeps ``itertext``, so the text never depends on which path read it and no entity is ever expanded.
    """
    if next(root.iter(etree.Entity), None) is not None:
        return _flat_itertext
    tostring = etree.tostring

    def flat(element) -> str:
        if element is None:
            return ""
        return _collapse(tostring(element, method="text", encoding="unicode", with_tail=False))

    return flat


def caption_text(caption, flat: Callable[[Any], str] = _flat_itertext) -> str:
    """Caption title and paragraphs as one text: ``"Title. Paragraph one. Paragraph two."``.

    Each part gets :func:`clean_text`'s punctuation fix; the test for one runs once over the joined caption (it
    finds every part's case, and at worst a junction's, which only costs the per-part pass).
    """
    if caption is None:
        return ""
    parts: list[str] = []
    title = flat(caption.find("title"))
    if title:
        parts.append(title if title[-1] in ".!?:" else title + ".")
    for child in caption:
        tag = child.tag
        if tag == "p" or (isinstance(tag, str) and tag.endswith("list")):
            paragraph = flat(child)
            if paragraph:
                parts.append(paragraph)
    joined = " ".join(parts)
    if _needs_punctuation_fix(joined):
        joined = " ".join(_fix_punctuation(part) for part in parts)
    return joined


# -- licenses ------------------------------------------------------------------------------------------
_CC_URL = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z\-]+)", re.I)
_CC_TEXT = [  # (pattern over lower-cased license text, family); most specific first
    (re.compile(r"attribution[- ]noncommercial[- ]sharealike|by-nc-sa"), "cc-by-nc-sa"),
    (re.compile(r"attribution[- ]noncommercial[- ]no ?derivs?|by-nc-nd"), "cc-by-nc-nd"),
    (re.compile(r"attribution[- ]noncommercial|by-nc\b|non-commercial"), "cc-by-nc"),
    (re.compile(r"attribution[- ]sharealike|by-sa\b"), "cc-by-sa"),
    (re.compile(r"attribution[- ]no ?derivs?|by-nd\b"), "cc-by-nd"),
    (re.compile(r"\bcc0\b|public domain dedication"), "cc0"),
    (re.compile(r"public domain"), "pd"),
    (re.compile(r"creative commons attribution|\bcc[- ]by\b"), "cc-by"),
]


def license_family(url: str | None = None, text: str = "", license_type: str | None = None) -> str:
    """Normalise a license URL / type attribute / statement to ``cc-by``, ``cc-by-nc``, ``cc0``, ``pd``, ...

    ``license-type="open-access"`` alone says nothing about reuse rights, so it never decides.
    """
    for candidate in (url, license_type):
        if not candidate:
            continue
        m = _CC_URL.search(candidate)
        if m:
            kind, code = m.group(1).lower(), m.group(2).lower()
            if kind == "publicdomain":
                return "cc0" if code == "zero" else "pd"
            return "cc-" + code
        low = candidate.lower().strip()
        if re.fullmatch(r"cc[- ]?by(-(nc|sa|nd))*|cc0|pd", low):
            return low.replace(" ", "-").replace("ccby", "cc-by")
    low = _WS.sub(" ", text.lower())
    for pattern, family in _CC_TEXT:
        if pattern.search(low):
            return family
    return "unknown"


def _license(root, text: Callable[[Any], str] = clean_text) -> tuple[str, str | None]:
    for lic in root.iter("license"):
        url = lic.get(XLINK_HREF)
        ali = next(lic.iter(ALI_LICENSE_REF), None)
        if not url and ali is not None:
            url = (ali.text or "").strip()
        if not url:  # a link inside the statement: <ext-link xlink:href="http://creativecommons.org/...">
            links = (e.get(XLINK_HREF) or "" for e in lic.iter("ext-link"))
            url = next((link for link in links if "creativecommons" in link), None)
        family = license_family(url, text(lic), lic.get("license-type"))
        if family != "unknown":
            return family, url
    for ali in root.iter(ALI_LICENSE_REF):  # JATS 1.2 may put ali:license_ref outside <license>
        url = (ali.text or "").strip()
        family = license_family(url)
        if family != "unknown":
            return family, url
    return "unknown", None


# -- article -------------------------------------------------------------------------------------------
_PARSER_OPTIONS = dict(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, recover=False
)
_local = threading.local()


def _parser():
    """The hardened parser, built once per thread (a parser object carries the state of the parse it runs)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        from lxml import etree

        parser = _local.parser = etree.XMLParser(**_PARSER_OPTIONS)
    return parser


# -- the skeleton: the parts of the article a figure record needs ---------------------------------------
# A whole-tree parse of an eLife article spends most of its time on body text and references that no figure record
# reads. The skeleton is the article with only what the record reads: the bytes before the root start tag (XML
# declaration, DOCTYPE) and the root start tag itself (its namespace declarations) verbatim, then the <front> element
# (less its author, abstract and funding groups when they hold nothing the article reads), then every <fig> element
# after it that no non-figure container holds, then "</article>": 13% of the corpus's bytes. It is parsed with the
# same hardened parser, so entities, namespaces and errors inside those parts behave as in the whole document, and the
# same code reads the tree. The cuts are found by :class:`_Tags`. Whenever the file is anything but plain (an internal
# DTD subset, an encoding that is not ASCII-compatible, no <front>/<article-meta>, a <fig> inside a <fig>, unbalanced
# tags of the cut elements, a skeleton that does not parse on its own, a license statement only outside <front>), the
# whole document is parsed instead. A truncated file (no "</article>" at its end) always is, so it gets lxml's error.
# What the skeleton gives up: a well-formedness error in text it leaves out (a broken tag in a body paragraph of a
# file that ends properly) is not reported; ``parse_article(..., strict=True)`` checks the whole file.
_PROLOG = re.compile(
    rb"(?:\xef\xbb\xbf)?\s*(?:<\?xml(?P<decl>(?:[^?]|\?(?!>))*)\?>)?(?:\s+|<!--.*?-->|<\?.*?\?>)*"
    rb"(?:<!DOCTYPE\s[^\[\]<>]*>)?(?:\s+|<!--.*?-->|<\?.*?\?>)*"
    rb"<article(?=[\s>])(?:[^>\"']|\"[^\"]*\"|'[^']*')*(?<!/)>",
    re.S,
)
_ENCODING = re.compile(rb"encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_ASCII_COMPATIBLE = re.compile(rb"(?i)utf-?8|us-ascii|ascii|iso-8859-\d+|latin-?1")
_TAIL = re.compile(rb"</article\s*>(?:\s+|<!--.*?-->|<\?.*?\?>)*\Z", re.S)
_START_TAG_REST = re.compile(rb"(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")  # attribute values may hold '>'
_END_TAG_REST = re.compile(rb"\s*>")
_DELIMITERS = b" \t\r\n/>"  # what follows an element name in a tag


class _NotPlain(Exception):
    """The file needs the whole-document parse."""


def _word(name: bytes) -> int:
    return int.from_bytes(name[:4], "little")


# Children of <article-meta> that are most of its bytes (authors and affiliations, abstracts, funding: ~3/4 of the
# corpus's front matter) and that no field reads; the skeleton leaves each out when it holds no figure, license
# or pub-date.
_FRONT_CUTS = (b"contrib-group", b"abstract", b"funding-group")
# The element names the skeleton cuts along, each found by the first four bytes after "<" or "</".
_CUT_NAMES = (b"fig", b"front", *_NOT_FIGURE_CONTAINER_TAGS, *_FRONT_CUTS)
_CUT_WORDS = sorted(
    [(_word(b"fig" + bytes([d])), 0) for d in _DELIMITERS] + [(_word(n), j) for j, n in enumerate(_CUT_NAMES) if j]
)


_HASH_SHIFT = 26  # 64 slots


@lru_cache(maxsize=1)
def _key_tables():
    """A collision-free multiplicative hash of the ``_CUT_WORDS`` keys: (multiplier, key per slot, name index per
    slot). Hand-rolled because one multiply, shift and gather per "<" cost a quarter less than ``searchsorted``
    over the sorted keys; the multiplier is the first of a fixed sequence that separates the keys.
    """
    import numpy as np

    keys = [k for k, _ in _CUT_WORDS]
    for n in range(1, 1 << 16):
        multiplier = (n * 2654435761) & 0xFFFFFFFF | 1
        slots = [((k * multiplier) & 0xFFFFFFFF) >> _HASH_SHIFT for k in keys]
        if len(set(slots)) == len(slots):
            break
    else:  # not reached for these keys; kept so a new cut name cannot pass silently
        raise RuntimeError("no collision-free multiplier for the JATS cut names")
    table = np.zeros(1 << (32 - _HASH_SHIFT), dtype=np.uint32)  # slot 0's key 0 never matches: "<" + 3 NULs
    names = np.zeros(len(table), dtype=np.int64)
    for slot, (key, j) in zip(slots, _CUT_WORDS):
        table[slot], names[slot] = key, j
    return np.uint32(multiplier), table, names


class _Tags:
    """The start and end tags of the cut elements in ``data[start:stop]``.

    Found with numpy over the offsets of every "<": the four bytes after "<" (or "</"), read as one little-endian
    uint32 through an overlapping view, are looked up among the cut names' first four bytes in a small hash table
    (:func:`_key_tables`). Hand-written because nothing in lxml reports byte offsets, and ``bytes.find`` with a
    several-byte needle runs at ~1 GB/s: one pass per name cost more than the parse it was meant to spare. Figure
    and front tags are then checked exactly (whole name, not inside a comment, CDATA or PI); container tags only
    where their four-byte count puts a figure inside one (rare), see :meth:`inside_container`.
    """

    def __init__(self, data: bytes, start: int, stop: int):
        import numpy as np

        self.data = data
        arr = np.frombuffer(data, dtype=np.uint8, count=stop)
        words = np.ndarray(shape=(len(data) - 3,), dtype="<u4", buffer=data, strides=(1,))  # the word at each byte
        lt = np.flatnonzero(arr[start:] == 60) + start  # every "<"; stop is a "</article", so lt + 6 is in range
        after = words[lt + 1]
        low = after & 0xFF
        closing = low == 47  # "</"
        key = np.where(closing, words[lt + 2], after)
        multiplier, table, names = _key_tables()
        slot = (key * multiplier) >> np.uint32(_HASH_SHIFT)
        hit = np.flatnonzero(table[slot] == key)
        code = names[slot[hit]] * 2 + closing[hit]  # (name, is end tag)
        order = np.argsort(code, kind="stable")
        positions = lt[hit][order].tolist()
        bounds = np.searchsorted(code[order], np.arange(2 * len(_CUT_NAMES) + 1)).tolist()
        self._raw = {
            (name, is_end): positions[bounds[2 * j + is_end]: bounds[2 * j + is_end + 1]]
            for j, name in enumerate(_CUT_NAMES) for is_end in (0, 1)
        }

        # comments, CDATA sections and processing instructions, in order: the "<" inside them are not tags
        self.hidden_starts: list[int] = []
        self.hidden_ends: list[int] = []
        end = start
        for i in lt[(low == 33) | (low == 63)].tolist():  # "<!", "<?"
            if i < end:
                continue
            if data[i + 1] == 63:
                close, width = data.find(b"?>", i + 2), 2
            elif data.startswith(b"<!--", i):
                close, width = data.find(b"-->", i + 4), 3
            elif data.startswith(b"<![CDATA[", i):
                close, width = data.find(b"]]>", i + 9), 3
            else:  # a markup declaration inside content: not well-formed
                close = -1
            if close < 0:
                raise _NotPlain
            end = close + width
            self.hidden_starts.append(i)
            self.hidden_ends.append(end)
        self._exact: dict[tuple[bytes, int], list[int]] = {}
        self._counts = {name: (self._raw[name, 0], self._raw[name, 1]) for name in _NOT_FIGURE_CONTAINER_TAGS}

    def hides(self, pos: int) -> bool:
        k = bisect_right(self.hidden_starts, pos) - 1
        return k >= 0 and pos < self.hidden_ends[k]

    def exact(self, name: bytes, is_end: int) -> list[int]:
        """Offsets of the real ``<name`` start tags (self-closing ones left out) or ``</name`` end tags."""
        found = self._exact.get((name, is_end))
        if found is None:
            found = self._exact[name, is_end] = self.within(name, is_end, 0, len(self.data))
        return found

    def within(self, name: bytes, is_end: int, lo: int, hi: int) -> list[int]:
        """:meth:`exact`'s tags at offsets in ``[lo, hi)``."""
        raw = self._raw[name, is_end]
        data, found, at = self.data, [], 1 + is_end + len(name)
        for i in raw[bisect_left(raw, lo): bisect_left(raw, hi)]:
            if not data.startswith(name, i + 1 + is_end) or (self.hidden_starts and self.hides(i)):
                continue
            if is_end:
                if _END_TAG_REST.match(data, i + at):
                    found.append(i)
            elif data[i + at] in _DELIMITERS:
                head = _START_TAG_REST.match(data, i + at)
                if head is None:
                    raise _NotPlain
                if name in (b"fig", b"front") or data[head.end() - 2] != 47:  # <container/> holds nothing
                    found.append(i)
        return found

    def end_of(self, start: int, name: bytes) -> int:
        """The offset just past the element whose start tag begins at ``start`` (no ``name`` nested in it)."""
        data = self.data
        head = _START_TAG_REST.match(data, start + 1 + len(name))
        if head is None:
            raise _NotPlain
        if data[head.end() - 2] == 47:  # <name .../>
            return head.end()
        ends = self.exact(name, 1)
        k = bisect_left(ends, start)
        if k == len(ends):
            raise _NotPlain
        return _END_TAG_REST.match(data, ends[k] + 2 + len(name)).end()

    def nested_end(self, start: int, name: bytes, opens: list[int], closes: list[int]) -> int:
        """Like :meth:`end_of` for an element that may hold others of its name (a <contrib-group> in one), given
        the exact start and end tags of that name around it."""
        i, j, depth = bisect_right(opens, start), bisect_left(closes, start), 1
        while j < len(closes):
            if i < len(opens) and opens[i] < closes[j]:
                depth, i = depth + 1, i + 1
                continue
            depth -= 1
            if not depth:
                return _END_TAG_REST.match(self.data, closes[j] + 2 + len(name)).end()
            j += 1
        raise _NotPlain

    def inside_container(self, pos: int) -> bool:
        """Whether ``pos`` lies inside a non-figure container: more of its start than end tags come before it.

        Counted first over the four-byte matches, then, where that count says "inside", over the exact tags.
        The first count can only err towards "inside" (an ``<inline-graphic/>`` counts as an open container) as
        long as no tag hides in a comment, CDATA or PI (a hidden ``</table-wrap>`` could cancel a real one), so
        with hidden markup the exact tags decide alone.
        """
        for name, (opens, closes) in self._counts.items():
            if self.hidden_starts or bisect_left(opens, pos) > bisect_left(closes, pos):
                opens, closes = self.exact(name, 0), self.exact(name, 1)
                if bisect_left(opens, pos) > bisect_left(closes, pos):
                    return True
        return False


def _front_parts(data: bytes, tags: _Tags, front: int, front_end: int, figs: list[int]) -> list[bytes]:
    """``data[front:front_end]`` as pieces, less the :data:`_FRONT_CUTS` elements inside <article-meta> that
    hold nothing the article reads (no <fig>, "license" or "pub-date" in them)."""
    meta = data.find(b"<article-meta", front, front_end)
    meta_end = data.find(b"</article-meta", meta, front_end)
    cuts = []
    for name in _FRONT_CUTS:
        end = meta
        opens, closes = tags.within(name, 0, meta, meta_end), tags.within(name, 1, meta, meta_end)
        for i in opens:
            if i < end:
                continue
            end = tags.nested_end(i, name, opens, closes)
            if (end > meta_end or bisect_left(figs, i) != bisect_left(figs, end)
                    or data.find(b"license", i, end) >= 0 or data.find(b"pub-date", i, end) >= 0):
                continue
            cuts.append((i, end))
    pieces, at = [], front
    for i, end in sorted(cuts):
        if i < at:  # inside a cut already made (an <abstract> in a <contrib-group>)
            continue
        pieces.append(data[at:i])
        at = end
    pieces.append(data[at:front_end])
    return pieces


def _skeleton(data: bytes) -> tuple[bytes, Callable[[], bool]]:
    """The skeleton document (see above), and a test whether the file says "license" outside its <front>.

    Raises :class:`_NotPlain` when the file needs the whole-document parse.
    """
    prolog = _PROLOG.match(data)
    if prolog is None:
        raise _NotPlain
    decl = prolog.group("decl")
    encoding = _ENCODING.search(decl) if decl else None
    if encoding is not None and not _ASCII_COMPATIBLE.fullmatch(encoding.group(1)):
        raise _NotPlain  # the byte offsets below assume an ASCII-compatible encoding
    body = prolog.end()
    last = data.rfind(b"</article")
    if last < body or _TAIL.match(data, last) is None:
        raise _NotPlain  # truncated or trailing junk: the whole-document parse says what is wrong
    tags = _Tags(data, body, last)
    fronts = tags.exact(b"front", 0)
    if not fronts:
        raise _NotPlain
    front = fronts[0]
    if data.find(b"<sub-article", body, front) >= 0 or data.find(b"<response", body, front) >= 0:
        raise _NotPlain  # this <front> belongs to a sub-article: the article itself has none
    front_end = tags.end_of(front, b"front")
    if data.find(b"<article-meta", front, front_end) < 0 or data.find(b"</article-meta", front, front_end) < 0:
        raise _NotPlain
    figs = tags.exact(b"fig", 0)
    if figs and figs[0] < front:
        raise _NotPlain
    parts = [data[:body], *_front_parts(data, tags, front, front_end, figs)]
    previous_end = front_end
    for i in figs:
        if i < front_end:
            continue  # inside <front>, which comes whole
        if i < previous_end:
            raise _NotPlain  # a <fig> inside a <fig>
        end = tags.end_of(i, b"fig")
        if not tags.inside_container(i):
            parts.append(data[i:end])
        previous_end = end
    parts.append(b"</article>")

    def license_outside_front() -> bool:
        return data.find(b"license", body, front) >= 0 or data.find(b"license", front_end) >= 0

    return b"".join(parts), license_outside_front


def _root(etree, data: bytes, base_url: str | None):
    try:
        root = etree.fromstring(data, _parser(), base_url=base_url)
    except etree.XMLSyntaxError as exc:
        raise JatsError(f"malformed or truncated XML: {exc}") from exc
    if root is None or root.tag != "article":
        tag = getattr(root, "tag", None)
        raise JatsError(f"not a JATS article (root element <{tag}>, expected <article>)")
    return root


def _year(meta) -> int | None:
    dates = list(meta.iter("pub-date"))
    order = ("epub", "ppub", "pub", "epub-ppub", "collection", None)

    def rank(d):
        kind = d.get("pub-type") or d.get("date-type")
        return order.index(kind) if kind in order else len(order)

    for d in sorted(dates, key=rank):
        text = (d.findtext("year") or "").strip()
        if text.isdigit():
            return int(text)
    return None


def _is_figure(fig) -> bool:
    return not any(a.tag in _NOT_FIGURE_CONTAINERS for a in fig.iterancestors())


def parse_article(source: str | Path | bytes, strict: bool = False) -> Article:
    """Parse one JATS article (a path or the XML bytes). Raises :class:`JatsError` for unreadable XML.

    Reads the skeleton (front matter and figures, see above) when the file allows, else the whole document;
    both give the same :class:`Article`. ``strict=True`` always parses the whole document, so any
    well-formedness error anywhere in the file raises (at about three times the cost).
    """
    from lxml import etree

    data, base_url = (source, None) if isinstance(source, bytes) else (Path(source).read_bytes(), str(source))
    if strict:
        return _article(etree, _root(etree, data, base_url), None)
    try:
        skeleton, license_outside_front = _skeleton(data)
        article = _article(etree, _root(etree, skeleton, base_url), license_outside_front)
    except (_NotPlain, JatsError):  # JatsError: the cut-out parts did not stand alone (a namespace declared on
        article = None  # an element left out, ...); the whole document decides
    return article or _article(etree, _root(etree, data, base_url), None)


def _article(etree, root, license_outside: Callable[[], bool] | None) -> Article | None:
    """The article of a parsed tree; ``license_outside`` is given for a skeleton (None: the whole document).

    None when the skeleton cannot decide: its front matter names no known license and the file has a license
    statement elsewhere.
    """
    flat = _flat_function(etree, root)

    def text(element) -> str:
        return _fix_punctuation(flat(element))

    front = root.find("front")
    meta = front.find("article-meta") if front is not None else None
    if meta is None:
        if license_outside is not None:
            return None
        meta = root
    ids: dict[str, str] = {}
    for el in meta.findall("article-id"):
        kind = (el.get("pub-id-type") or "").lower()
        if el.text and kind not in ids:
            ids[kind] = el.text.strip()
    pmc = ids.get("pmc") or ids.get("pmcid")
    pmcid = None if not pmc else (pmc if pmc.upper().startswith("PMC") else f"PMC{pmc}")
    journal_meta = front.find("journal-meta") if front is not None else None
    journal = ""
    if journal_meta is not None:
        journal = text(journal_meta.find(".//journal-title")) or next(
            (text(j) for j in journal_meta.findall("journal-id") if j.get("journal-id-type") == "nlm-ta"), ""
        )
    license_, license_url = _license(meta, text)
    if license_ == "unknown" and meta is not root:
        if license_outside is not None and license_outside():
            return None
        license_, license_url = _license(root, text)

    article = Article(
        pmcid=pmcid,
        pmid=ids.get("pmid"),
        doi=ids.get("doi"),
        title=text(meta.find("title-group/article-title")),
        journal=journal,
        year=_year(meta),
        license=license_,
        license_url=license_url,
    )
    for index, fig in enumerate(f for f in root.iter("fig") if _is_figure(f)):
        graphic = fig.find("graphic")
        if graphic is None:
            graphic = fig.find("alternatives/graphic")
        article.figures.append(
            Figure(
                fig_id=fig.get("id") or f"fig{index + 1}",
                label=text(fig.find("label")),
                caption=caption_text(fig.find("caption"), flat),
                href=graphic.get(XLINK_HREF) if graphic is not None else None,
            )
        )
    return article


# -- graphic resolution --------------------------------------------------------------------------------
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif")


def resolve_graphic(href: str, names: dict[str, str]) -> str | None:
    """Find the package file a ``<graphic xlink:href>`` means.

    ``names`` maps lower-cased file names (no folders) to the real name/member. The href may carry an
    extension or not, in any case; with none, ``.jpg`` is preferred over ``.png``, ``.tif`` and ``.gif``
    (PMC's thumbnails are ``.gif``).
    """
    base = href.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if base in names:
        return names[base]
    stem = base
    for ext in IMAGE_EXTENSIONS:
        if base.endswith(ext):
            stem = base[: -len(ext)]
            break
    for ext in IMAGE_EXTENSIONS:
        if stem + ext in names:
            return names[stem + ext]
    return None
