"""End-to-end pipelines: ingest -> shards -> train -> register -> bench -> promote, from one YAML recipe.

A recipe (a YAML file; each package ships its own as package data, ``clipzoo/<domain>/pipelines/<name>.yaml``,
registered with ``registry.add_pipeline``)::

    name: synthetic
    description: shapes set, tiny CLIP
    domain: core
    ingest:                       # each step is exactly a `clipzoo ingest` command
      - name: train
        source: core synthetic    # DOMAIN SOURCE
        inputs: []
        args: [--count, 3000]
    curate:                       # optional; each is a `clipzoo curate IN... --out DIR` with a recipe's steps
      - name: train               # ${curate.train} is its curated shard folder (report.md/.json/.png inside)
        inputs: ["${ingest.train}"]
        steps: [{dedup: {by: [pixels, phash]}}, {filter: {min_words: 3}}]
    train:                        # a trainer config (clipzoo train); ${ingest.train} is that step's shard folder
      model: {config: clipzoo-tiny}
      data: {train: "${ingest.train}", batch_size: 32}
      train: {max_steps: 600}   # bounded by steps, never wall time
    register: {name: clipzoo-synthetic-tiny, aliases: [candidate], promote: champion}
    bench:
      tasks: [core/synthetic-retrieval]
      options: {core/synthetic-retrieval: {count: 100}}
    variants:                     # optional: more models trained and benchmarked the same way (ablations),
      - name: rgb-only            # not registered; scores print as "TASK [NAME]"
        train: {model: {config: ...}, data: {train: "${ingest.other}"}, train: {max_steps: 100}}
        bench: {tasks: [...], options: {...}}

Strings may use ``${shared}`` (the shared data folder: $CLIPZOO_SHARED_DATA, else ``../shared/data`` beside
the source checkout when running from one), ``${workdir}``, ``${ingest.NAME}`` and ``${curate.NAME}``. Everything a run
writes goes under its workdir (default ``runs/<name>``). Running a recipe again resumes: ingest and curate steps
whose manifest exists are kept, interrupted ones are finished (``--resume``), and training continues from its last
checkpoint (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("clipzoo.pipeline")

_VAR = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")


class PipelineError(Exception):
    """A recipe that cannot run (bad section, unknown variable, a failed step); printed as one line."""


def _checkout_root() -> Path | None:
    """The source checkout this module runs from (an editable install), or None (a wheel install)."""
    root = Path(__file__).resolve().parents[5]  # packages/core/src/clipzoo/core/pipeline.py -> checkout
    return root if (root / "packages" / "core" / "pyproject.toml").is_file() else None


def shared_data_dir() -> Path:
    """$CLIPZOO_SHARED_DATA, else ``shared/data`` beside the checkout, else ``shared/data`` in the working folder."""
    env = os.environ.get("CLIPZOO_SHARED_DATA")
    if env:
        return Path(env)
    root = _checkout_root()
    return (root.parent if root else Path.cwd()) / "shared" / "data"


def _substitute(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            if m.group(1) not in variables:
                raise PipelineError(f"unknown variable ${{{m.group(1)}}}; known: {', '.join(sorted(variables))}")
            return variables[m.group(1)]

        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value


def available_recipes() -> dict[str, Path]:
    """Recipes by name: those core and the domain plugins ship as package data (``registry.add_pipeline``)."""
    from clipzoo.core.plugins import get_registry

    return dict(sorted(get_registry().pipelines.items()))


def find_recipe(ref: str) -> Path:
    """A recipe by path, or by name (see :func:`available_recipes`)."""
    path = Path(ref)
    if path.is_file():
        return path
    candidates = available_recipes()
    if ref in candidates:
        return candidates[ref]
    raise PipelineError(f"no pipeline {ref!r}; available: {', '.join(sorted(candidates)) or 'none'}")


@dataclass
class PipelineResult:
    name: str
    workdir: Path
    ingest: dict[str, dict[str, Any]] = field(default_factory=dict)
    curate: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    registered: dict[str, Any] = field(default_factory=dict)
    bench: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _leftover(out: Path, record: Path) -> tuple[bool, bool]:
    """``(resume, overwrite)`` for a step whose output ``out`` has no manifest yet: an earlier run of the step
    that left its unit records (``record``) is finished; one killed before it planned (anything else left, it holds
    no finished unit) is replaced; a missing or empty folder is written anew."""
    if not out.exists() or not any(out.iterdir()):
        return False, False
    return (True, False) if record.exists() else (False, True)


def _run_ingest_step(step: dict[str, Any], out: Path) -> None:
    """One ingest step, exactly as ``clipzoo ingest DOMAIN SOURCE INPUT... --out DIR ARGS`` (same parser), run in
    this process through :func:`clipzoo.core.ingest.run_ingest`."""
    from clipzoo.core.cli import ingest_argument_parser, run_ingest_args
    from clipzoo.core.data.writer import MANIFEST_NAME
    from clipzoo.core.ingest import IngestError
    from clipzoo.core.ingest_engine import PLAN_NAME, UNITS_DIR
    from clipzoo.core.plugins import get_registry

    domain, source = step["source"].split()
    argv = [*map(str, step.get("inputs") or []), "--out", str(out), *map(str, step.get("args") or [])]
    log.info("$ clipzoo ingest %s %s %s", domain, source, " ".join(argv))
    try:
        args = ingest_argument_parser(get_registry().source(domain, source)).parse_args(argv)
        if not (out / MANIFEST_NAME).is_file():  # an ingest step killed earlier: finish it (the plan check
            resume, overwrite = _leftover(out, out / UNITS_DIR / PLAN_NAME)  # refuses other inputs) or replace it
            args.resume, args.overwrite = resume, overwrite or (args.overwrite and not resume)
        summary = run_ingest_args(args)
    except IngestError as exc:
        raise PipelineError(f"ingest step {step['name']!r}: {exc}") from None
    if summary["samples_written"] == 0:
        raise PipelineError(f"ingest step {step['name']!r} read nothing from its inputs; see the messages above")


def _run_curate_step(step: dict[str, Any], out: Path) -> dict[str, Any]:
    """One curate step, resumed like an ingest step; returns its report (the funnel and the report path).

    A finished output (manifest and report) is kept; otherwise what a killed run left is finished or replaced as for
    an ingest step (:func:`_leftover`): with its unit records, ``resume`` (units whose record still matches are not
    written again); without, replaced.
    """
    from clipzoo.core.curate import CurateError, run_curate
    from clipzoo.core.curate.engine import UNITS_DIR
    from clipzoo.core.curate.report import funnel_lines, load_report
    from clipzoo.core.data.writer import MANIFEST_NAME

    if (out / MANIFEST_NAME).is_file() and (out / "report.json").is_file():
        log.info("curate %s: kept the curated set in %s", step["name"], out)
        report = load_report(out)
    else:
        resume, overwrite = _leftover(out, out / UNITS_DIR)
        try:
            report = run_curate(step.get("inputs") or [], out, step.get("steps") or [],
                                workers=int(step.get("workers", 1)), overwrite=overwrite, resume=resume,
                                progress=False)
        except CurateError as exc:
            raise PipelineError(f"curate step {step['name']!r}: {exc}") from None
    for line in funnel_lines(report):
        log.info("curate %s: %s", step["name"], line)
    return {"in": report["samples_in"], "out": report["samples_out"], "report": str(out / "report.md"),
            "funnel": [(s["step"], s["removed"]) for s in report["steps"]]}


RECIPE_SECTIONS = ("name", "description", "domain", "ingest", "curate", "train", "bench", "register", "variants")


def _load_recipe(recipe_path: Path) -> dict[str, Any]:
    """The recipe's YAML, its sections checked (an unknown one is a typo that would silently do nothing)."""
    import yaml

    recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8")) or {}
    unknown = set(recipe) - set(RECIPE_SECTIONS)
    if unknown:
        raise PipelineError(f"{recipe_path}: unknown section(s) {', '.join(sorted(unknown))}")
    return recipe


def _train_config(section: dict[str, Any], name: str, output_dir: Path, tracking_uri: str | None) -> dict[str, Any]:
    """A trainer config from a recipe's ``train`` section: the run's name (unless set), output folder and store."""
    cfg = json.loads(json.dumps(section))
    cfg.setdefault("run", {})
    cfg["run"].setdefault("name", name)
    cfg["run"]["output_dir"] = str(output_dir)
    if tracking_uri:
        cfg["run"]["tracking_uri"] = tracking_uri
    return cfg


@dataclass
class _PipelineRun:
    """One recipe run: its steps as methods, in the order :func:`run_pipeline` calls them; ``variables`` grows as
    steps produce outputs (``${ingest.NAME}``, ``${curate.NAME}``)."""

    recipe: dict[str, Any]
    work: Path
    variables: dict[str, str]
    result: PipelineResult
    overrides: list[str] | None
    tracking_uri: str | None

    def ingest(self) -> None:
        """Each step is a ``clipzoo ingest DOMAIN SOURCE INPUT... --out DIR ARGS``; a finished one is kept."""
        from clipzoo.core.data.writer import MANIFEST_NAME, Manifest

        for step in self.recipe.get("ingest") or []:
            step = _substitute(step, self.variables)
            out = self.work / "shards" / step["name"]
            self.variables[f"ingest.{step['name']}"] = str(out)
            if (out / MANIFEST_NAME).is_file():
                log.info("ingest %s: kept existing shards in %s", step["name"], out)
            else:
                _run_ingest_step(step, out)
            m = Manifest.load(out)
            self.result.ingest[step["name"]] = {"samples": m.num_samples, "skipped": len(m.ingest.get("skipped", []))}

    def curate(self) -> None:
        """Each step is a ``clipzoo curate IN... --out DIR`` with the recipe's steps; ``${curate.NAME}`` its output."""
        for step in self.recipe.get("curate") or []:
            step = _substitute(step, self.variables)
            out = self.work / "shards" / f"curated_{step['name']}"
            self.variables[f"curate.{step['name']}"] = str(out)
            self.result.curate[step["name"]] = _run_curate_step(step, out)

    def train(self) -> Path:
        """Train (resuming from the last checkpoint of an earlier run); returns the exported model folder."""
        from clipzoo.core.train import load_config, train

        section = _substitute(self.recipe.get("train") or {}, self.variables)
        cfg = _train_config(section, self.result.name, self.work / "train", self.tracking_uri)
        res = train(load_config(base=cfg, overrides=self.overrides))
        self.result.train = {"steps": res.steps, "samples_seen": res.samples_seen, "samples_per_s": res.samples_per_s,
                             "final_loss": res.history[-1]["loss"] if res.history else None,
                             "model_dir": str(res.model_dir)}
        return Path(res.model_dir)

    def register(self, model_dir: Path, reg: dict[str, Any]) -> str:
        """Register the model (the version the benchmarks attach to); returns its ``models:/NAME/VERSION``."""
        from clipzoo.core.registry.client import register_model

        version = register_model(model_dir, reg["name"], aliases=reg.get("aliases", ["candidate"]),
                                 tracking_uri=self.tracking_uri)
        uri = f"models:/{reg['name']}/{version}"
        self.result.registered = {"name": reg["name"], "version": version, "uri": uri}
        return uri

    def bench(self, model_ref: str) -> None:
        """The recipe's benchmark tasks on ``model_ref``; logged (and attached) only for a registered version."""
        from clipzoo.core.bench import run_benchmark

        bench = _substitute(self.recipe.get("bench") or {}, self.variables)
        if not bench.get("tasks"):
            return
        results = run_benchmark(model_ref, list(bench["tasks"]), task_options=bench.get("options"),
                                tracking_uri=self.tracking_uri, log=bool(self.result.registered),
                                out=self.work / "bench.json", print_table=False)
        self.result.bench = dict(results["tasks"])  # whole entries: format_results prints interval and chance

    def promote(self, alias: str) -> None:
        """Move ``alias`` to the new version, guarded: refused unless its benchmark is at least the champion's."""
        from clipzoo.core.registry.client import promote
        from clipzoo.core.registry.errors import PromotionRefused

        name, version = self.result.registered["name"], self.result.registered["version"]
        try:
            decision = promote(name, version, alias, tracking_uri=self.tracking_uri)
            self.result.registered["promoted"] = f"{alias} ({decision['reason']})"
        except PromotionRefused as exc:
            self.result.registered["promoted"] = f"refused: {exc}"

    def variants(self) -> None:
        """Further models trained and benchmarked beside the main one (ablations), never registered."""
        for variant in _substitute(self.recipe.get("variants") or [], self.variables):
            _run_variant(variant, self.work, self.overrides, self.tracking_uri, self.result)


def run_pipeline(recipe_path: str | Path, *, workdir: str | Path | None = None, overrides: list[str] | None = None,
                 fresh: bool = False, tracking_uri: str | None = None, register: bool = True) -> PipelineResult:
    """Run a recipe: ingest -> curate -> train -> register -> bench -> promote -> variants (see the module docstring).

    A re-run resumes: finished ingest/curate outputs are kept, interrupted ones finished, training continues from
    its last checkpoint; ``fresh`` removes the workdir first. ``register=False`` benchmarks the model folder instead.
    """
    t0 = time.time()
    recipe_path = Path(recipe_path)
    recipe = _load_recipe(recipe_path)
    name = recipe.get("name") or recipe_path.stem
    work = Path(workdir or Path("runs") / name).resolve()
    shared = shared_data_dir()
    if "${shared}" in recipe_path.read_text(encoding="utf-8") and not shared.is_dir():
        raise PipelineError(f"this recipe reads the shared data folder, which is not at {shared}; "
                            f"set CLIPZOO_SHARED_DATA to the folder holding PROVENANCE.md")
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    run = _PipelineRun(recipe, work, {"shared": str(shared), "workdir": str(work)},
                       PipelineResult(name=name, workdir=work), overrides, tracking_uri)
    log.info("pipeline %s -> %s", name, work)

    run.ingest()
    run.curate()
    model_dir = run.train()
    reg = _substitute(recipe.get("register") or {}, run.variables)
    model_ref = run.register(model_dir, reg) if register and reg else str(model_dir)
    run.bench(model_ref)
    if run.result.registered and reg.get("promote"):
        run.promote(reg["promote"])
    run.variants()
    run.result.seconds = time.time() - t0
    return run.result


def _run_variant(variant: dict[str, Any], work: Path, overrides: list[str] | None, tracking_uri: str | None,
                 result: PipelineResult) -> None:
    """Train ``variant["train"]`` (a trainer config; the run's overrides apply too) and benchmark it on
    ``variant["bench"]``; its scores join ``result.bench`` as ``"TASK [NAME]"`` (e.g. an RGB-only ablation of a
    multispectral model, benchmarked the same way)."""
    from clipzoo.core.bench import run_benchmark
    from clipzoo.core.train import load_config, train

    name = variant.get("name")
    if not name or not isinstance(variant.get("train"), dict) or not (variant.get("bench") or {}).get("tasks"):
        raise PipelineError(f"variant {name or '?'}: a variant needs a name, a train section and bench tasks")
    out = work / "variants" / name
    cfg = _train_config(variant["train"], name, out / "train", tracking_uri)
    res = train(load_config(base=cfg, overrides=overrides))
    bench = variant["bench"]
    results = run_benchmark(str(res.model_dir), list(bench["tasks"]), task_options=bench.get("options"),
                            tracking_uri=tracking_uri, log=False, out=out / "bench.json", print_table=False)
    result.bench.update({f"{t} [{name}]": entry for t, entry in results["tasks"].items()})  # whole entries


def _bench_cell(entry: Any) -> str:
    """A task's headline metric with its 95% interval, chance and test items (or "too few items to measure");
    a bare ``(metric, value)`` pair prints as it is."""
    if isinstance(entry, (tuple, list)):
        metric, value = entry
        return f"{metric:<16} {value:.4f}"
    from clipzoo.core.bench.table import format_value

    metric = entry["primary"]
    value, interval, chance = format_value(entry, metric)
    items = f"{entry['n_items']} items" if entry.get("n_items") else "no interval"
    return f"{metric:<16} {value} {interval if interval != '-' else ''}  chance {chance}  ({items})"


def format_results(results: list[PipelineResult]) -> str:
    lines = []
    for r in results:
        lines.append(f"== {r.name}  ({r.seconds:.0f} s, {r.workdir})")
        for step, s in r.ingest.items():
            lines.append(f"   ingest {step:<12} {s['samples']:>6} samples  {s['skipped']:>4} skipped")
        for step, c in r.curate.items():
            lines.append(f"   curate {step:<12} {c['in']:>6} -> {c['out']} samples  "
                         + "  ".join(f"{name} -{n}" for name, n in c["funnel"]) + f"  ({c['report']})")
        t = r.train
        if t:
            loss = f"{t['final_loss']:.3f}" if t.get("final_loss") is not None else "-"
            lines.append(f"   train  {t['steps']:>5} steps  {t['samples_seen']:>7} samples  "
                         f"{t['samples_per_s']:>7.1f} samples/s  final loss {loss}")
        for task, entry in r.bench.items():
            lines.append(f"   bench  {task:<34} {_bench_cell(entry)}")
        if r.registered:
            lines.append(f"   registry {r.registered['uri']}  {r.registered.get('promoted', '')}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("pipeline", help="run end-to-end recipes (ingest -> train -> register -> bench)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ps = p.add_subparsers(dest="pipeline_command", metavar="COMMAND", required=True)
    r = ps.add_parser("run", help="run one or more recipes, then print a results table and the leaderboard",
                      description="Run recipes in order. Trainer overrides (--train.max_steps=50) apply to each.")
    r.add_argument("recipes", nargs="+", help="recipe files or names (see 'clipzoo pipeline list')")
    r.add_argument("--workdir", type=Path, default=None, help="parent folder of the runs (default: runs/)")
    r.add_argument("--fresh", action="store_true", help="delete each run's workdir first instead of resuming")
    r.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI or ~/.clipzoo)")
    r.add_argument("--no-register", action="store_true", help="train and benchmark without registering")
    r.set_defaults(func=_cmd_run)
    ls = ps.add_parser("list", help="list the available recipes")
    ls.set_defaults(func=_cmd_list)


def _cmd_list(args) -> int:
    for n, p in sorted(available_recipes().items()):
        print(f"{n:<20} {p}")
    return 0


def _cmd_run(args) -> int:
    try:
        paths = [find_recipe(ref) for ref in args.recipes]
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results, failed = [], []
    for path in paths:  # one failing recipe does not stop the others; the exit code reports it
        workdir = (args.workdir / path.stem) if args.workdir else None
        try:
            results.append(run_pipeline(path, workdir=workdir, overrides=args.overrides, fresh=args.fresh,
                                        tracking_uri=args.tracking_uri, register=not args.no_register))
        except PipelineError as exc:
            print(f"error: pipeline {path.stem}: {exc}", file=sys.stderr)
            failed.append(f"{path.stem}: {exc}")
    print()
    print(format_results(results))
    if any(r.registered for r in results):
        from clipzoo.core.registry.leaderboard import collect

        board = collect(args.tracking_uri)
        print("\nleaderboard (every registered version x task, headline metric):")
        print(board.to_terminal())
        out = (args.workdir or Path("runs")) / "leaderboard"
        out.mkdir(parents=True, exist_ok=True)
        (out / "leaderboard.md").write_text(board.to_markdown(), encoding="utf-8")
        if board.rows and board.tasks:
            board.to_png(out / "leaderboard.png")
        print(f"\nleaderboard written to {out}/leaderboard.md and .png")
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0
