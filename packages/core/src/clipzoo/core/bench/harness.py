"""Run named benchmark tasks on a model: cached embeddings, results JSON, printed table, MLflow logging.

``run_benchmark("models:/astro-clip@candidate", ["astro/plasticc-retrieval"])`` resolves the tasks
(unknown names fail before the model loads), loads the model, evaluates each task on embeddings
cached per (weights, dataset), prints a table, logs an MLflow run (metrics ``<task>/<metric>``,
``results.json``) and, for a registered version, tags the version with the scores
(``bench/<task>/<metric>``) so the leaderboard and the promotion rule can read them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)  # not `log`: run_benchmark takes log=


def resolve_tasks(task_names: list[str], task_options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``{name: Task}`` built from the plugin registry; an unknown name raises with the list of known ones."""
    from clipzoo.core.plugins import get_registry

    registry = get_registry()
    if not task_names:
        raise ValueError(f"no task given; available: {', '.join(sorted(registry.tasks)) or 'none'}")
    factories = {name: registry.task(name) for name in task_names}  # UnknownNameError lists the tasks
    options = task_options or {}
    return {name: factory(**options.get(name, {})) for name, factory in factories.items()}


def format_table(results: dict[str, Any]) -> str:
    """The results as an aligned text table: task, kind, metric, value (primary metric first, marked *)."""
    rows = [("task", "kind", "metric", "value")]
    for task, entry in results["tasks"].items():
        metrics = entry["metrics"]
        order = [entry["primary"]] + sorted(m for m in metrics if m != entry["primary"])
        for i, metric in enumerate(m for m in order if m in metrics):
            rows.append((task if i == 0 else "", entry["kind"] if i == 0 else "",
                         metric + (" *" if metric == entry["primary"] else ""), f"{metrics[metric]:.4f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"model {results['model']}  (weights {results['weights_sha256'][:12]})"]
    for j, row in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    for dataset, items in (results.get("skipped") or {}).items():
        lines.append(f"! {dataset}: {len(items)} unreadable file(s) left out (listed in the results JSON)")
    return "\n".join(lines)


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
        metrics = {f"{task}/{metric}": value for task, entry in results["tasks"].items()
                   for metric, value in entry["metrics"].items()}
        mlflow.log_metrics(metrics)
        mlflow.log_dict(results, "results.json")
        run_id = run.info.run_id
    if version is not None:
        attach_benchmark(
            version.name, version.version,
            {t: e["metrics"] for t, e in results["tasks"].items()},
            {t: e["primary"] for t, e in results["tasks"].items()},
            tracking_uri=uri, run_id=run_id,
        )
        refresh_card(version.name, version.version, loaded.package_dir, tracking_uri=uri)
        logger.info("attached results to %s version %s (tags and model card)", version.name, version.version)
    return run_id


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
) -> dict[str, Any]:
    """Evaluate ``task_names`` on ``model_ref`` (a URI, a model folder or a loaded model); return the results.

    The results dict: ``model``, ``name``/``version`` (registry versions), ``weights_sha256``,
    ``created``, ``tasks: {name: {kind, primary, metrics, seconds, settings}}``, ``mlflow_run_id``,
    ``cache: {hits, misses}``. ``out`` also writes it as JSON (atomically).
    """
    from clipzoo.core.bench.cache import Embedder
    from clipzoo.core.registry.loading import LoadedModel, load_model

    tasks = resolve_tasks(list(task_names), task_options)
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
    for name, task in tasks.items():
        start = time.perf_counter()
        logger.info("task %s (%s)", name, task.kind)
        metrics = task.evaluate(embedder)
        results["tasks"][name] = {
            "kind": task.kind,
            "primary": task.primary,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "seconds": round(time.perf_counter() - start, 3),
            "settings": task.describe(),
        }
    results["cache"] = {"hits": embedder.hits, "misses": embedder.misses, "dir": str(embedder.cache_dir)}
    results["skipped"] = embedder.skipped
    for dataset, items in embedder.skipped.items():
        logger.warning("%s: %d unreadable file(s) left out, e.g. %s (%s)", dataset, len(items), items[0]["path"], items[0]["reason"])
    results["mlflow_run_id"] = _log_to_mlflow(results, loaded, tracking_uri) if log else None
    if out is not None:
        from clipzoo.core.data.writer import atomic_write_text

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out), json.dumps(results, indent=2, default=str) + "\n")
    if print_table:
        print(format_table(results))
    return results

