"""JATS/NLM article XML -> article metadata and figure-caption records.

The parser is safe for untrusted input: lxml with entity resolution, DTD loading and network access off
(no XXE, no billion laughs, no fetching of the ``JATS-archivearticle1.dtd`` the DOCTYPE names).

A *figure* is a ``<fig>`` element (inside ``<fig-group>`` too) whose image is a direct ``<graphic>`` (or one in
``<alternatives>``). Not figures: ``<table-wrap>`` graphics, ``<inline-graphic>``, formula graphics
(``<disp-formula>``/``<inline-formula>``) and ``<supplementary-material>``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
ALI_LICENSE_REF = "{http://www.niso.org/schemas/ali/1.0/}license_ref"

# Elements whose <fig>/<graphic> descendants are not figures of the article.
_NOT_FIGURE_CONTAINERS = {"table-wrap", "supplementary-material", "disp-formula", "inline-formula", "chem-struct-wrap"}


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
# after whitespace is collapsed: the space before closing punctuation / after an opening bracket goes (literal ""
# replacements with look-arounds: the r"\1" templates these replaced were a third of the JATS parse time)
_SPACE_AROUND_PUNCT = re.compile(r" (?=[,.;:!?)\]])|(?<=[(\[]) ")


def clean_text(element) -> str:
    """Flatten inline markup (italic, sub/sup, xref, ext-link ...) into readable, whitespace-normalised text."""
    if element is None:
        return ""
    text = " ".join("".join(element.itertext()).split())
    return _SPACE_AROUND_PUNCT.sub("", text) if " " in text else text


def caption_text(caption) -> str:
    """Caption title and paragraphs as one text: ``"Title. Paragraph one. Paragraph two."``."""
    if caption is None:
        return ""
    parts: list[str] = []
    title = clean_text(caption.find("title"))
    if title:
        parts.append(title if title[-1] in ".!?:" else title + ".")
    for child in caption:
        if child.tag == "p" or (isinstance(child.tag, str) and child.tag.endswith("list")):
            text = clean_text(child)
            if text:
                parts.append(text)
    return " ".join(parts)


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


def _license(root) -> tuple[str, str | None]:
    for lic in root.iter("license"):
        url = lic.get(XLINK_HREF)
        ali = next(lic.iter(ALI_LICENSE_REF), None)
        if not url and ali is not None:
            url = (ali.text or "").strip()
        if not url:  # a link inside the statement: <ext-link xlink:href="http://creativecommons.org/...">
            links = (e.get(XLINK_HREF) or "" for e in lic.iter("ext-link"))
            url = next((link for link in links if "creativecommons" in link), None)
        family = license_family(url, clean_text(lic), lic.get("license-type"))
        if family != "unknown":
            return family, url
    for ali in root.iter(ALI_LICENSE_REF):  # JATS 1.2 may put ali:license_ref outside <license>
        url = (ali.text or "").strip()
        family = license_family(url)
        if family != "unknown":
            return family, url
    return "unknown", None


# -- article -------------------------------------------------------------------------------------------
def _parser():
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, recover=False
    )


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


def parse_article(source: str | Path | bytes) -> Article:
    """Parse one JATS article (a path or the XML bytes). Raises :class:`JatsError` for unreadable XML."""
    from lxml import etree

    try:
        if isinstance(source, bytes):
            root = etree.fromstring(source, _parser())
        else:
            root = etree.parse(str(source), _parser()).getroot()
    except etree.XMLSyntaxError as exc:
        raise JatsError(f"malformed or truncated XML: {exc}") from exc
    if root is None or root.tag != "article":
        tag = getattr(root, "tag", None)
        raise JatsError(f"not a JATS article (root element <{tag}>, expected <article>)")

    front = root.find("front")
    meta = front.find("article-meta") if front is not None else None
    if meta is None:
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
        journal = clean_text(journal_meta.find(".//journal-title")) or next(
            (clean_text(j) for j in journal_meta.findall("journal-id") if j.get("journal-id-type") == "nlm-ta"), ""
        )
    license_, license_url = _license(meta if meta is not root else root)
    if license_ == "unknown" and meta is not root:
        license_, license_url = _license(root)

    article = Article(
        pmcid=pmcid,
        pmid=ids.get("pmid"),
        doi=ids.get("doi"),
        title=clean_text(meta.find("title-group/article-title")),
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
                label=clean_text(fig.find("label")),
                caption=caption_text(fig.find("caption")),
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
