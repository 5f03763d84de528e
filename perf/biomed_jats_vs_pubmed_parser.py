"""clipzoo.biomed JATS figure extraction vs pubmed_parser.parse_pubmed_caption, on the same files, same run.

Compares, per article: figures found, captions (exact text after whitespace normalisation), and whether the
graphic reference names the figure's image; then parsing speed (articles/s) for both, as a ratio. The
baseline is PyPI ``pubmed-parser`` (``pubmed_parser.parse_pubmed_caption``), the extractor BIOMEDICA-style
pipelines commonly start from.

    .venv/bin/python perf/biomed_jats_vs_pubmed_parser.py [--data DIR] [--rounds 21]

``--data`` defaults to ``$CLIPZOO_SHARED_DATA`` or ``../shared/data`` (the folder with PROVENANCE.md); the
files are ``biomed/jats_corpus/elife-tools/*.xml`` (23 eLife articles, 262 figures), ``biomed/pmc_jats/*.nxml``
and ``biomed/jats_packages/*/*.xml``. Speed: both parsers run interleaved in one loop, file by file (who goes
first alternates), for ``--rounds`` rounds; the articles/s ratio of each round's totals is printed as median
and quartiles over rounds. Target (issue 10): >= 3x pubmed_parser.

Work per article, from the path: pubmed_parser reads the file into a whole lxml tree (its default parser), reads
PMID/PMC/DOI/publisher-id and, per <fig>, id, label, caption (text of each caption child and its direct
children only, so nested markup such as <sub> inside <italic> is lost) and graphic ref. clipzoo's parse_article
does more: besides ids, figures (label, caption with all inline text, graphic ref; figures inside tables,
formulas and supplementary material left out) it reads title, journal, year and the license family. It reads
the file's skeleton (front matter and figures, cut out by byte offsets; see clipzoo.biomed.jats) instead of
the whole tree; ``--strict`` times ``parse_article(..., strict=True)``, the whole-document parse.

``--floor`` adds two more sides to the same loop: our read without building the Article (file read, skeleton cut,
lxml parse of the skeleton) and lxml's parse of a skeleton cut beforehand. pubmed_parser's time over each is what
the ratio could reach if the rest of our code cost nothing: it shows which part a faster reader must shrink.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def _files(data: Path) -> list[Path]:
    files = sorted((data / "biomed" / "jats_corpus" / "elife-tools").glob("*.xml"))
    files += sorted((data / "biomed" / "pmc_jats").glob("*.nxml"))
    files += sorted((data / "biomed" / "jats_packages").glob("*/*.xml"))
    if not files:
        sys.exit(f"no JATS files under {data}/biomed; pass --data DIR (the folder holding PROVENANCE.md)")
    return files


STRICT = False  # --strict: our side parses the whole document


def ours(path: Path) -> list[dict]:
    from clipzoo.biomed.jats import parse_article

    article = parse_article(path, strict=STRICT)
    return [{"id": f.fig_id, "caption": f.caption, "graphic": f.href} for f in article.figures]


def baseline(path: Path) -> list[dict]:
    import pubmed_parser

    figs = pubmed_parser.parse_pubmed_caption(str(path)) or []  # returns None for an article without figures
    return [{"id": f.get("fig_id"), "caption": f.get("fig_caption", ""), "graphic": f.get("graphic_ref")} for f in figs]


def _graphic_ok(graphic: str | None, folder: Path) -> bool:
    """The reference names an image of the package (any extension), or names a plausible image stem when the
    package ships no images (the pubmed-parser .nxml files)."""
    from clipzoo.biomed.jats import resolve_graphic

    if not graphic:
        return False
    names = {p.name.lower(): p.name for p in folder.iterdir() if p.is_file()}
    if any(n.endswith((".tif", ".jpg", ".png", ".gif")) for n in names):
        return resolve_graphic(graphic, names) is not None
    return "." in graphic or "-" in graphic


def _first_difference(name: str, x: dict, y: dict, context: int = 40) -> str:
    a, b = _norm(x["caption"]), _norm(y["caption"])
    i = next((k for k, (c, d) in enumerate(zip(a, b)) if c != d), min(len(a), len(b)))
    lo = max(0, i - context)
    return f"  {name}#{x['id']}:\n    ours: ...{a[lo:i + context]}...\n    pp:   ...{b[lo:i + context]}..."


def skeleton_only(path: Path) -> None:
    """Our read without building the Article: read the file, cut the skeleton, parse it with lxml."""
    from lxml import etree

    from clipzoo.biomed import jats

    jats._root(etree, jats._skeleton(path.read_bytes())[0], str(path))


_SKELETONS: dict[Path, bytes] = {}


def parse_only(path: Path) -> None:
    """lxml's parse of the file's skeleton, cut beforehand (outside the timing): the part of our read that any
    reader built on lxml and this skeleton pays, whatever its own code costs."""
    from lxml import etree

    from clipzoo.biomed import jats

    jats._root(etree, _SKELETONS[path], str(path))


def _interleaved(files: list[Path], rounds: int, sides: tuple = (ours, baseline)) -> dict:
    """Seconds per round for each side, all timed in the same loop, file by file (the order rotates)."""
    for f in files:  # warm imports and the OS cache
        for fn in sides:
            fn(f)
    times: dict = {fn: [] for fn in sides}
    for r in range(rounds):
        spent = dict.fromkeys(sides, 0.0)
        for i, f in enumerate(files):
            k = (i + r) % len(sides)
            for fn in sides[k:] + sides[:k]:
                start = time.perf_counter()
                fn(f)
                spent[fn] += time.perf_counter() - start
        for fn in sides:
            times[fn].append(spent[fn])
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("CLIPZOO_SHARED_DATA") or str(REPO.parent / "shared" / "data")
    parser.add_argument("--data", default=default, help="shared data folder (holds PROVENANCE.md)")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved passes over the files for the speed")
    parser.add_argument("--strict", action="store_true", help="time our whole-document parse (strict=True)")
    parser.add_argument("--floor", action="store_true",
                        help="also time, in the same loop, our read without building the Article and lxml's parse "
                             "of the ready skeleton alone: what the ratio could reach if our own code cost nothing")
    args = parser.parse_args(argv)
    global STRICT
    STRICT = args.strict
    files = _files(Path(args.data))
    if args.floor:
        from clipzoo.biomed import jats

        _SKELETONS.update({f: jats._skeleton(f.read_bytes())[0] for f in files})

    rows = [("article", "figs ours", "figs pubmed_parser", "same captions", "graphic ok ours", "graphic ok pp")]
    totals = [0, 0, 0, 0, 0]
    differences: list[str] = []
    for path in files:
        a, b = ours(path), baseline(path)
        same = sum(1 for x, y in zip(a, b) if x["id"] == y["id"] and _norm(x["caption"]) == _norm(y["caption"]))
        differences += [_first_difference(path.name, x, y)
                        for x, y in zip(a, b) if _norm(x["caption"]) != _norm(y["caption"])]
        ok_a = sum(_graphic_ok(x["graphic"], path.parent) for x in a)
        ok_b = sum(_graphic_ok(y["graphic"], path.parent) for y in b)
        rows.append((path.name, str(len(a)), str(len(b)), f"{same}/{max(len(a), len(b))}",
                     f"{ok_a}/{len(a)}", f"{ok_b}/{len(b)}"))
        for i, v in enumerate((len(a), len(b), same, ok_a, ok_b)):
            totals[i] += v
    rows.append(("TOTAL", str(totals[0]), str(totals[1]), f"{totals[2]}/{max(totals[0], totals[1])}",
                 f"{totals[3]}/{totals[0]}", f"{totals[4]}/{totals[1]}"))

    sides = (ours, baseline, skeleton_only, parse_only) if args.floor else (ours, baseline)
    times = _interleaved(files, args.rounds, sides)
    t_ours, t_base = times[ours], times[baseline]

    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, row in enumerate(rows):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0 or j == len(rows) - 2:
            print("  ".join("-" * w for w in widths))
    if differences:
        print("\ncaptions that differ (first difference, ours / pubmed_parser):")
        print("\n".join(differences))
    print()
    import statistics

    ratios = sorted(b / a for a, b in zip(t_ours, t_base))
    q1, med, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    med = statistics.median(ratios)
    print(f"speed ({len(files)} articles x {args.rounds} interleaved rounds, parse only, same process):")
    mode = "strict=True, whole document" if STRICT else "skeleton"
    print(f"  clipzoo.biomed.jats  {len(files) / statistics.median(t_ours):8.1f} articles/s (median round; {mode})")
    print(f"  pubmed_parser        {len(files) / statistics.median(t_base):8.1f} articles/s (median round)")
    print(f"  ratio ours/pubmed_parser (articles/s): median {med:.2f}x, quartiles {q1:.2f}-{q3:.2f}; target >= 3x")
    if args.floor:
        print("bounds, same loop (pubmed_parser's time over the part's; each part's ratio is an upper bound for a "
              "reader that pays it):")
        for fn, what in ((skeleton_only, "read + skeleton cut + lxml parse, no Article built"),
                         (parse_only, "lxml parse of the ready skeleton only")):
            bound = sorted(b / a for a, b in zip(times[fn], t_base))
            print(f"  {what:<52} median {statistics.median(bound):.2f}x "
                  f"(min {bound[0]:.2f}x, max {bound[-1]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
