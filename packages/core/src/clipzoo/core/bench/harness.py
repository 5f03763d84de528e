"""Run named benchmark tasks on a model: cached embeddings, results JSON, printed table, MLflow logging.

``run_benchmark("models:/astro-clip@candidate", ["astro/plasticc-retrieval"])`` resolves the tasks
(unknown names fail before the model loads), loads the model, evaluates each task on embeddings
cached per (weights, dataset), prints a table, logs an MLflow run (metrics ``<task>/<metric>``,
``results.json``) and, for a registered version, tags the version with the scores
(``bench/<task>/<metric>``) so the leaderboard and the promotion rule can read them.

Every measured number comes with its chance level (from the task: ``1/classes``, ``k/N``...) and a
seeded percentile-bootstrap 95% interval over the test items (``bootstrap`` resamples, 1000 by default;
``bootstrap_seed``). A number whose interval is wider than ``MAX_INTERVAL_WIDTH``, or that rests on fewer than
``MIN_TEST_ITEMS`` test items (both in :mod:`clipzoo.core.bench.table`), is printed as "too few items to measure".
Each task's result also records its resolved options and a fingerprint of them and of its test data, so the
promotion rule compares only like with like.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from clipzoo.core.bench.table import format_value

logger = logging.getLogger(__name__)  # not `log`: run_benchmark takes log=

DEFAULT_RESAMPLES = 1000
INTERVAL_LEVEL = 0.95
# harness settings that may be given as task options (--set bootstrap=2000); they never reach the task factory
HARNESS_OPTIONS = ("bootstrap", "bootstrap_seed")


def resolved_options(factory: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The options a task factory runs with: its signature's defaults overlaid with the ``given`` ones."""
    import inspect

    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: only what was given is known
        params = []
    out = {p.name: p.default for p in params
           if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD}
    out.update(given)
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def resolve_tasks(task_names: list[str], task_options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``{name: Task}`` built from the plugin registry; an unknown name raises with the list of known ones."""
    return {name: task for name, (task, _, _) in _build_tasks(task_names, task_options).items()}


def _build_tasks(task_names: list[str], task_options: dict[str, dict[str, Any]] | None
                 ) -> dict[str, tuple[Any, dict[str, Any], dict[str, Any]]]:
    """``{name: (Task, resolved options, harness options)}``; harness options are taken out of the task's."""
    from clipzoo.core.plugins import get_registry

    registry = get_registry()
    if not task_names:
        raise ValueError(f"no task given; available: {', '.join(sorted(registry.tasks)) or 'none'}")
    factories = {name: registry.task(name) for name in task_names}  # UnknownNameError lists the tasks
    out = {}
    for name, factory in factories.items():
        given = dict((task_options or {}).get(name, {}))
        harness = {k: given.pop(k) for k in HARNESS_OPTIONS if k in given}
        out[name] = (factory(**given), resolved_options(factory, given), harness)
    return out


def format_table(results: dict[str, Any]) -> str:
    """The results as an aligned text table: task, kind, items, metric, value, 95% interval, chance.

    The primary metric comes first, marked ``*``; numbers the data cannot support read "too few items
    to measure" (the interval stays visible).
    """
    from clipzoo.core.bench.table import text_table

    rows = []
    for task, entry in results["tasks"].items():
        metrics = entry["metrics"]
        order = [entry["primary"]] + sorted(m for m in metrics if m != entry["primary"])
        for i, metric in enumerate(m for m in order if m in metrics):
            first = i == 0
            rows.append([task if first else "", entry["kind"] if first else "",
                         str(entry.get("n_items", "?")) if first else "",
                         metric + (" *" if metric == entry["primary"] else ""), *format_value(entry, metric)])
    boot = next((e["bootstrap"] for e in results["tasks"].values() if e.get("bootstrap")), None)
    lines = [f"model {results['model']}  (weights {results['weights_sha256'][:12]})"]
    if boot:
        lines.append(f"{boot['level']:.0%} bootstrap intervals over the test items ({boot['resamples']} resamples, "
                     f"seed {boot['seed']}); chance = the score of a model that ignores its input")
    lines.append(text_table(["task", "kind", "items", "metric", "value", "95% interval", "chance"], rows,
                            align="llrlrrr"))
    for task, entry in results["tasks"].items():
        if entry.get("counts"):
            lines.append(f"  {task}: " + ", ".join(f"{v} {k}" for k, v in entry["counts"].items()))
        if entry.get("note"):
            lines.append(f"! {task}: {entry['note']}")
    for dataset, items in (results.get("skipped") or {}).items():
        lines.append(f"! {dataset}: {len(items)} unreadable file(s) left out (listed in the results JSON)")
    return "\n".join(lines)


def score_task(task: Any, embedder: Any, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """One task's result entry: point values, chance, bootstrap intervals, item count, fingerprint.

    A task kind from :mod:`clipzoo.core.bench.tasks` gives per-item scores; a task that only implements
    ``evaluate`` (a domain's own kind) gets point values and a note saying why it has no interval.
    """
    from clipzoo.core.bench import metrics as M
    from clipzoo.core.bench.tasks import Task

    entry: dict[str, Any] = {"kind": task.kind, "primary": task.primary}
    if isinstance(task, Task) and type(task).evaluate is Task.evaluate:
        scores = task.score(embedder)
        entry["metrics"] = {k: float(v) for k, v in scores.values().items()}
        entry["n_items"] = int(scores.n_items)
        entry["support"] = {m: scores.support(m) for m in scores.measured}
        entry["chance"] = {m: scores.chance[m] for m in scores.measured}
        entry["chance_rule"] = {m: scores.chance_rule[m] for m in scores.measured}
        entry["interval"] = {m: list(v) for m, v in
                             M.bootstrap_intervals(scores, resamples, seed, INTERVAL_LEVEL).items()}
        entry["info"] = sorted(scores.info)
        entry["counts"] = dict(scores.counts)
        entry["bootstrap"] = {"resamples": int(resamples), "seed": int(seed), "level": INTERVAL_LEVEL}
    else:
        entry["metrics"] = {k: float(v) for k, v in task.evaluate(embedder).items()}
        entry["note"] = (f"{type(task).__name__} reports point values only (no per-item scores): "
                         "no interval or chance level")
    return entry


def _log_to_mlflow(results: dict[str, Any], loaded, tracking_uri: str | None) -> str:
    import mlflow

    from clipzoo.core.registry import settings as registry_settings
    from clipzoo.core.registry import store
    from clipzoo.core.registry.client import attach_benchmark, refresh_card

    experiment = (registry_settings.settings().get("experiments") or {}).get("bench", "clipzoo-bench")
    uri = store.setup_mlflow(tracking_uri, experiment=experiment)
    version = loaded.version
    with mlflow.start_run(run_name=f"bench {loaded.label}") as run:
        mlflow.set_tags({
            "clipzoo.kind": "bench",
            "clipzoo.model_uri": results["model"],
            "weights_sha256": results["weights_sha256"],
            **({"clipzoo.model_name": version.name, "clipzoo.model_version": str(version.version)} if version else {}),
        })
        mlflow.log_params({"model_uri": results["model"], "tasks": ",".join(results["tasks"])})
        metrics = {}
        for task, entry in results["tasks"].items():
            for metric, value in entry["metrics"].items():
                metrics[f"{task}/{metric}"] = value
                if metric in (entry.get("interval") or {}):
                    metrics[f"{task}/{metric}_ci_low"], metrics[f"{task}/{metric}_ci_high"] = entry["interval"][metric]
                    metrics[f"{task}/{metric}_chance"] = entry["chance"][metric]
            mlflow.set_tags({f"{task}/fingerprint": entry["fingerprint"],
                             f"{task}/n_items": str(entry.get("n_items", "?")),
                             **{f"{task}/{k}": str(v) for k, v in (entry.get("counts") or {}).items()}})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(results, "results.json")
        run_id = run.info.run_id
    if version is not None:
        attach_benchmark(
            version.name, version.version,
            {t: e["metrics"] for t, e in results["tasks"].items()},
            {t: e["primary"] for t, e in results["tasks"].items()},
            tracking_uri=uri, run_id=run_id,
            details={t: bench_details(e) for t, e in results["tasks"].items()},
        )
        refresh_card(version.name, version.version, loaded.package_dir, tracking_uri=uri)
        logger.info("attached results to %s version %s (tags and model card)", version.name, version.version)
    return run_id


def bench_details(entry: dict[str, Any]) -> dict[str, Any]:
    """What a registry version keeps of a task result besides the values (see ``registry.client.attach_benchmark``)."""
    keys = ("fingerprint", "options", "settings", "n_items", "support", "counts", "interval", "chance", "bootstrap")
    return {k: entry[k] for k in keys if k in entry}


def run_benchmark(
    model_ref: Any,
    task_names: list[str],
    *,
    cache_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    log: bool = True,
    task_options: dict[str, dict[str, Any]] | None = None,
    out: str | Path | None = None,
    print_table: bool = True,
    batch_size: int = 64,
    bootstrap: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = 0,
) -> dict[str, Any]:
    """Evaluate ``task_names`` on ``model_ref`` (a URI, a model folder or a loaded model); return the results.

    The results dict: ``model``, ``name``/``version`` (registry versions), ``weights_sha256``,
    ``created``, ``tasks: {name: {kind, primary, metrics, chance, chance_rule, interval, n_items, counts, bootstrap,
    options, settings, fingerprint, seconds}}`` (``counts``: facts about the scored data such as pairs, not metrics),
    ``mlflow_run_id``, ``cache: {hits, misses}``. ``out`` also writes it as JSON (atomically). ``bootstrap``
    resamples (seeded by ``bootstrap_seed``) give the 95% intervals; a task's options ``bootstrap``/``bootstrap_seed``
    override them for that task.
    """
    from clipzoo.core.bench.cache import Embedder
    from clipzoo.core.bench.tasks import task_fingerprint
    from clipzoo.core.models.inference import LoadedModel
    from clipzoo.core.registry.loading import load_model

    if int(bootstrap) < 1:
        raise ValueError(f"bootstrap={bootstrap}: the number of resamples must be at least 1 (1000 is usual)")
    built = _build_tasks(list(task_names), task_options)
    loaded = model_ref if isinstance(model_ref, LoadedModel) else load_model(model_ref, tracking_uri=tracking_uri)
    embedder = Embedder(loaded, cache_dir, batch_size=batch_size)
    results: dict[str, Any] = {
        "model": loaded.uri,
        "name": loaded.name,
        "version": int(loaded.version.version) if loaded.version is not None else None,
        "weights_sha256": loaded.weights_sha256,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tasks": {},
    }
    for name, (task, options, harness) in built.items():
        start = time.perf_counter()
        logger.info("task %s (%s)", name, task.kind)
        resamples = int(harness.get("bootstrap", bootstrap))
        if resamples < 1:
            raise ValueError(f"{name}: bootstrap={resamples}: the number of resamples must be at least 1")
        entry = score_task(task, embedder, resamples=resamples, seed=int(harness.get("bootstrap_seed", bootstrap_seed)))
        entry["options"] = options
        entry["settings"] = json.loads(json.dumps(task.describe(), default=str))
        entry["fingerprint"] = task_fingerprint({"task": name, "options": options, "settings": entry["settings"]})
        entry["seconds"] = round(time.perf_counter() - start, 3)
        results["tasks"][name] = entry
    results["cache"] = {"hits": embedder.hits, "misses": embedder.misses, "dir": str(embedder.cache_dir)}
    results["skipped"] = embedder.skipped
    for dataset, items in embedder.skipped.items():
        logger.warning("%s: %d unreadable file(s) left out, e.g. %s (%s)", dataset, len(items), items[0]["path"],
                       items[0]["reason"])
    results["mlflow_run_id"] = _log_to_mlflow(results, loaded, tracking_uri) if log else None
    if out is not None:
        from clipzoo.core.data.writer import atomic_write_text

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out), json.dumps(results, indent=2, default=str) + "\n")
    if print_table:
        print(format_table(results))
    return results

