"""``clipzoo curate``: dedup, decontaminate, balance and filter shard sets into a curated shard set.

    clipzoo curate --recipe r.yaml IN... --out DIR          # the steps of a YAML recipe, in order
    clipzoo curate IN... --out DIR --dedup --min-words 3    # single steps from flags
    clipzoo curate report DIR                               # print a curated folder's report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

RECIPE_EXAMPLE = """recipe (YAML):
  workers: 2
  steps:
    - dedup: {by: [pixels, phash, caption], phash_threshold: 8, caption_threshold: 0.8, keep: first}
    - decontaminate: {tasks: [{name: biomed/zeroshot, options: {shards: shards/test}}], shards: [held_out/]}
    - balance: {domains: [biomed], entries: [extra_entries.txt], t: 20000, seed: 0, unmatched: keep}
    - filter: {min_words: 2, max_words: 200, langs: [en], min_side: 64, max_aspect: 3,
               score_model: "models:/clipzoo-biomed-tiny@champion", top_fraction: 0.7}
"""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "curate", help="dedup, decontaminate, MetaCLIP-balance and filter shard sets into a curated set + report",
        description=__doc__ + "\nEvery removal is recorded by key, step and reason in DIR/manifest.json ('curation'); "
        "DIR/report.json, report.md and report.png hold the funnel, duplicate clusters and entry counts.",
        epilog=RECIPE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN", help="input shard folders (or: report DIR)")
    p.add_argument("--out", help="output folder for the curated shards, manifest and report (a local folder, or one "
                   "every Ray node mounts)")
    p.add_argument("--recipe", type=Path, help="YAML recipe with the steps (see below)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes (or Ray tasks at a time) running each pass (default: recipe's, else the cores)")
    p.add_argument("--engine", choices=("process", "ray"), default="process",
                   help="process: a local process pool; ray: Ray tasks (pip install clipzoo-core[ray]), as for "
                   "'clipzoo ingest' (default: %(default)s)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (e.g. auto, ray://head:10001; --out must "
                   "be a folder every node mounts); default: start a local Ray instance")
    p.add_argument("--shard-size", type=int, default=10_000, help="max samples per output shard (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace what is in a non-empty --out (the old manifest "
                   "is removed first, then the old shards and report)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted curate into --out: signatures and "
                   "decisions are computed again, only shards without a matching done record are written")
    p.add_argument("--tracking-uri", default=None, help="MLflow store for --score-model models:/ URIs")
    g = p.add_argument_group("dedup (instead of a recipe)")
    g.add_argument("--dedup", action="store_true", help="remove exact and near duplicates across the inputs")
    g.add_argument("--dedup-by", type=_csv, default=None, metavar="LIST", help="pixels,phash,caption (default: all)")
    g.add_argument("--phash-threshold", type=int, default=None, help="max pHash Hamming distance (default 8 of 64)")
    g.add_argument("--caption-threshold", type=float, default=None, help="min caption MinHash Jaccard (default 0.8)")
    g.add_argument("--keep", choices=("first", "license"), default=None, help="which duplicate stays (default: first)")
    g.add_argument("--licenses", type=_csv, default=None, metavar="LIST", help="license order for --keep license")
    g = p.add_argument_group("decontaminate")
    g.add_argument("--decontaminate-task", action="append", default=[], metavar="TASK", help="bench task name")
    g.add_argument("--set", dest="task_options", action="append", default=[], metavar="KEY=VALUE",
                   help="bench task option (TASK:KEY=VALUE for one task), as for 'clipzoo bench'")
    g.add_argument("--decontaminate-shards", action="append", default=[], type=Path, metavar="DIR")
    g.add_argument("--decontaminate-images", action="append", default=[], type=Path, metavar="DIR")
    g = p.add_argument_group("balance (MetaCLIP)")
    g.add_argument("--balance-domain", action="append", default=[], metavar="DOMAIN", help="a domain's entry list")
    g.add_argument("--balance-entries", action="append", default=[], type=Path, metavar="FILE",
                   help="an entry file (one entry per line)")
    g.add_argument("--balance-t", type=int, default=None, help="per-entry threshold t (default 20000)")
    g.add_argument("--balance-seed", type=int, default=None)
    g.add_argument("--unmatched", choices=("keep", "drop"), default=None, help="pairs matching no entry")
    g = p.add_argument_group("filter (DataComp-style)")
    for flag, typ in (("--min-chars", int), ("--max-chars", int), ("--min-words", int), ("--max-words", int),
                      ("--min-side", int), ("--max-aspect", float), ("--min-lang-prob", float),
                      ("--min-score", float), ("--top-fraction", float)):
        g.add_argument(flag, type=typ, default=None)
    g.add_argument("--langs", type=_csv, default=None, metavar="LIST", help="keep captions in these languages (langid)")
    g.add_argument("--score-model", default=None, metavar="MODEL",
                   help="CLIP-score model: models:/NAME@ALIAS, models:/NAME/VERSION or a model folder")
    p.set_defaults(func=run)
    return p


def _pick(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, [], False)}


def steps_from_flags(a: argparse.Namespace) -> list[dict[str, Any]]:
    """The steps the single-step flags ask for, in the order dedup, decontaminate, balance, filter."""
    from clipzoo.core.bench.cli import parse_options
    from clipzoo.core.curate.steps import CurateError

    steps: list[dict[str, Any]] = []
    dedup = _pick(by=a.dedup_by, phash_threshold=a.phash_threshold, caption_threshold=a.caption_threshold,
                  keep=a.keep, licenses=a.licenses)
    if a.dedup or dedup:
        steps.append({"dedup": dedup})
    if a.decontaminate_task or a.decontaminate_shards or a.decontaminate_images:
        try:
            options = parse_options(a.task_options, a.decontaminate_task)
        except ValueError as exc:
            raise CurateError(str(exc)) from None
        steps.append({"decontaminate": _pick(
            tasks=[{"name": t, "options": options[t]} for t in a.decontaminate_task],
            shards=[str(s) for s in a.decontaminate_shards], images=[str(s) for s in a.decontaminate_images])})
    elif a.task_options:
        raise CurateError("--set gives options to --decontaminate-task; name the task too")
    balance = _pick(domains=a.balance_domain, entries=[str(e) for e in a.balance_entries], t=a.balance_t,
                    seed=a.balance_seed, unmatched=a.unmatched)
    if balance:
        steps.append({"balance": balance})
    filt = _pick(min_chars=a.min_chars, max_chars=a.max_chars, min_words=a.min_words, max_words=a.max_words,
                 langs=a.langs, min_lang_prob=a.min_lang_prob, min_side=a.min_side, max_aspect=a.max_aspect,
                 score_model=a.score_model, min_score=a.min_score, top_fraction=a.top_fraction)
    if filt:
        steps.append({"filter": filt})
    return steps


def _report(folder: Path) -> int:
    from clipzoo.core.cli import UserError
    from clipzoo.core.curate.report import load_report, to_markdown

    try:
        print(to_markdown(load_report(folder)), end="")
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    return 0


def run(a: argparse.Namespace) -> int:
    from clipzoo.core.cli import UserError
    from clipzoo.core.curate.engine import load_recipe, run_curate
    from clipzoo.core.curate.metadata import EntryError
    from clipzoo.core.curate.report import funnel_lines
    from clipzoo.core.curate.steps import CurateError
    from clipzoo.core.ingest_engine import default_workers

    if a.inputs[0] == "report" and not Path("report").exists():
        if len(a.inputs) != 2 or a.out is not None:
            raise UserError("usage: clipzoo curate report DIR")
        return _report(Path(a.inputs[1]))
    try:
        if a.out is None:
            raise CurateError("--out DIR is required (where the curated shard set goes)")
        if "://" in a.out:  # checked here: Path() would fold s3://b/x into the local folder s3:/b/x
            raise CurateError(f"--out {a.out}: curate writes to a local folder (or one every Ray worker mounts), "
                              "not a URL; upload the curated set afterwards")
        a.out = Path(a.out)
        flag_steps = steps_from_flags(a)
        recipe = load_recipe(a.recipe) if a.recipe else {}
        if recipe and flag_steps:
            raise CurateError("give the steps either in --recipe or as flags, not both")
        steps = recipe.get("steps") if recipe else flag_steps
        if not steps:
            raise CurateError("nothing to do: give --recipe or a step flag (--dedup, --decontaminate-task, "
                              "--balance-domain, --min-words, ...)")
        workers = a.workers or int(recipe.get("workers", 0)) or default_workers()
        shard_size = int(recipe.get("shard_size", a.shard_size))
        report = run_curate(a.inputs, a.out, steps, workers=workers, engine=a.engine, ray_address=a.ray_address,
                            shard_size=shard_size, overwrite=a.overwrite, resume=a.resume, tracking_uri=a.tracking_uri)
    except (CurateError, EntryError) as exc:
        raise UserError(str(exc)) from None
    print(f"{a.out}: {report['samples_out']} of {report['samples_in']} samples kept")
    for line in funnel_lines(report):
        print(f"  {line}")
    print(f"  report: {a.out / 'report.md'} (.json, .png); removals in {a.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    from clipzoo.core.cli import main

    sys.exit(main(["curate", *sys.argv[1:]]))
