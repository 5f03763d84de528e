"""The leaderboard: every registered version x every benchmark task, from the versions' ``bench/`` tags.

Rendered as an aligned terminal table, a Markdown table and a PNG bar chart (matplotlib, Agg). Each
cell is the task's headline metric; ``-`` where a version has not run a task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Leaderboard:
    rows: list[dict[str, Any]] = field(default_factory=list)  # {"model", "version", "aliases", "scores": {task: value}}
    tasks: dict[str, str] = field(default_factory=dict)  # task -> headline metric

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        header = ["model", "version", "aliases"] + [f"{t} ({m})" for t, m in self.tasks.items()]
        body = []
        for row in self.rows:
            scores = [f"{row['scores'][t]:.4f}" if t in row["scores"] else "-" for t in self.tasks]
            body.append([row["model"], str(row["version"]), ",".join(row["aliases"]) or "-"] + scores)
        return header, body

    def to_terminal(self) -> str:
        if not self.rows:
            return "no registered versions yet (clipzoo registry register ...)"
        header, body = self._cells()
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        fmt = lambda r: "  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])

    def to_markdown(self) -> str:
        header, body = self._cells()
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(self.tasks)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines) + "\n"

    def to_png(self, path: str | Path) -> Path:
        """A grouped bar chart (one group per task, one bar per version), written atomically."""
        import os

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        if not self.rows or not self.tasks:
            raise ValueError("nothing to plot: no version has benchmark results (run clipzoo bench first)")
        path = Path(path)
        tasks = list(self.tasks)
        height = 0.8 / len(self.rows)
        fig, ax = plt.subplots(figsize=(9.0, max(3.0, 0.35 * len(tasks) * len(self.rows) + 1.5)))
        y = np.arange(len(tasks))
        for i, row in enumerate(self.rows):  # one horizontal bar per version in each task's group
            values = [row["scores"].get(t, np.nan) for t in tasks]
            label = f"{row['model']} v{row['version']}" + (f" ({','.join(row['aliases'])})" if row["aliases"] else "")
            ax.barh(y - (i - (len(self.rows) - 1) / 2) * height, values, height, label=label)
        ax.set_yticks(y, [f"{t}\n{self.tasks[t]}" for t in tasks], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("headline metric")
        top = np.nanmax([[r["scores"].get(t, np.nan) for t in tasks] for r in self.rows])
        ax.set_xlim(0, max(1.0, float(top) * 1.05))
        ax.set_title("clipzoo leaderboard")
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
        fig.savefig(tmp, dpi=120)
        plt.close(fig)
        os.replace(tmp, path)
        return path


def collect(tracking_uri: str | None = None, *, name: str | None = None, tasks: list[str] | None = None) -> Leaderboard:
    """Every version (of ``name``, or of all models; newest first) with its headline score per task."""
    from clipzoo.core.registry.client import list_models

    board = Leaderboard()
    for model in list_models(tracking_uri):
        if name is not None and model["name"] != name:
            continue
        for v in model["versions"]:
            scores = {}
            for task, head in v["headline"].items():
                if tasks and task not in tasks:
                    continue
                board.tasks.setdefault(task, head["metric"])
                if board.tasks[task] == head["metric"]:
                    scores[task] = head["value"]
            board.rows.append({"model": model["name"], "version": v["version"], "aliases": v["aliases"], "scores": scores})
    if name is not None and not board.rows:
        from clipzoo.core.registry.errors import RegistryError

        known = ", ".join(m["name"] for m in list_models(tracking_uri)) or "none"
        raise RegistryError(f"no registered model {name!r}; registered: {known}")
    board.tasks = dict(sorted(board.tasks.items()))
    return board
