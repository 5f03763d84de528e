"""Benchmark harness: task kinds, dataset helpers, embedding cache, runs, leaderboard.

- :mod:`clipzoo.core.bench.tasks` -- task kinds (zero-shot classification, retrieval, N-modal
  retrieval/classification, linear probe, GDA few-shot);
- :mod:`clipzoo.core.bench.datasets` -- image folder, CSV, shard folder and in-memory datasets;
- :mod:`clipzoo.core.bench.harness` -- :func:`run_benchmark` (cached embeddings, JSON, table, MLflow);
- leaderboard: :mod:`clipzoo.core.registry.leaderboard` (versions x tasks, one block per task).

Import-light: this module imports nothing heavy; ``register_core_tasks`` is what core's
``builtin.register`` calls.
"""

from __future__ import annotations

from typing import Any


def register_core_tasks(registry) -> None:
    """Register core's synthetic-set tasks (``core/synthetic-*``) on a :class:`PluginRegistry`."""
    from clipzoo.core.bench import core_tasks

    for name, factory in core_tasks.TASKS.items():
        registry.add_task(name, factory)


def run_benchmark(model_ref: Any, task_names: list[str], **kwargs: Any) -> dict[str, Any]:
    """See :func:`clipzoo.core.bench.harness.run_benchmark`."""
    from clipzoo.core.bench.harness import run_benchmark as run

    return run(model_ref, task_names, **kwargs)
