"""``clipzoo bench MODEL_URI --task NAME... [--set KEY=VALUE] [--list-tasks]``.

Import-light: the harness (torch, mlflow) is imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench",
        help="benchmark a model on named tasks (zero-shot, retrieval, linear probe, GDA few-shot)",
        description="Evaluate a model (models:/NAME@ALIAS, models:/NAME/VERSION or a model folder) on registered "
        "tasks. Embeddings are cached per (weights, dataset); results are printed, written as JSON, logged "
        "to MLflow and attached to the registry version. Every number comes with its chance level and a seeded "
        "95%% bootstrap interval over the test items; a number the data cannot support (fewer than 10 items or an "
        "interval wider than 0.5) is printed as 'too few items to measure'.",
    )
    p.add_argument("model", nargs="?", help="models:/NAME@ALIAS, models:/NAME/VERSION, or a model package folder")
    p.add_argument("--task", "-t", nargs="+", action="extend", default=[], metavar="NAME", help="task name(s)")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="task option for every task given (JSON values; e.g. root=/data/eurosat, shots=8); "
                   "TASK:KEY=VALUE for one task")
    p.add_argument("--list-tasks", action="store_true", help="list the registered tasks and exit")
    p.add_argument("--out", help="write the results JSON here")
    p.add_argument("--cache-dir", help="embedding cache (default <CLIPZOO_HOME>/cache/embeddings)")
    p.add_argument("--tracking-uri", help="MLflow store (default MLFLOW_TRACKING_URI or sqlite under CLIPZOO_HOME)")
    p.add_argument("--no-log", action="store_true", help="do not log to MLflow nor tag the registry version")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples of the test items for the 95%% intervals (default 1000; "
                   "also --set bootstrap=N, or TASK:bootstrap=N for one task)")
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="SEED",
                   help="seed of the bootstrap resampling (default 0; also --set bootstrap_seed=SEED)")
    p.set_defaults(func=run)
    return p


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(items: list[str], tasks: list[str]) -> dict[str, dict[str, Any]]:
    """``KEY=VALUE`` (every task) and ``TASK:KEY=VALUE`` (one task) into ``{task: {key: value}}``."""
    out: dict[str, dict[str, Any]] = {t: {} for t in tasks}
    for item in items:
        head, sep, raw = item.partition("=")
        target, _, key = head.rpartition(":")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: use KEY=VALUE or TASK:KEY=VALUE")
        for task in ([target] if target else tasks):
            if task not in out:
                raise ValueError(f"--set {item!r} names task {task!r}, which is not among --task {' '.join(tasks)}")
            out[task][key] = _value(raw)
    return out


def list_tasks() -> str:
    from clipzoo.core.plugins import get_registry

    tasks = get_registry().tasks
    if not tasks:
        return "no benchmark tasks registered"
    width = max(map(len, tasks))
    lines = []
    for name in sorted(tasks):
        doc = (tasks[name].__doc__ or "").strip().splitlines()
        lines.append(f"{name.ljust(width)}  {doc[0] if doc else ''}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list_tasks:
        print(list_tasks())
        return 0
    if not args.model or not args.task:
        print("clipzoo bench: error: give a MODEL_URI and --task NAME... (clipzoo bench --list-tasks lists them)", file=sys.stderr)
        return 2
    from clipzoo.core.bench.datasets import DatasetError
    from clipzoo.core.plugins import UnknownNameError
    from clipzoo.core.registry.errors import RegistryError

    try:
        from clipzoo.core.bench.harness import run_benchmark

        run_benchmark(
            args.model,
            args.task,
            cache_dir=args.cache_dir,
            tracking_uri=args.tracking_uri,
            log=not args.no_log,
            task_options=parse_options(args.options, args.task),
            out=args.out,
            batch_size=args.batch_size,
            bootstrap=args.bootstrap,
            bootstrap_seed=args.bootstrap_seed,
        )
    except (UnknownNameError, RegistryError, DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"clipzoo bench: error: {exc}", file=sys.stderr)
        return 2
    return 0
