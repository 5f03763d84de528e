"""The leaderboard: registered versions x benchmark tasks, one block per task, from the versions' tags only.

Each task gets its own block (scores on different tasks are not comparable, so they never share a
column): rows are the versions that ran it, columns its metrics as ``value [low, high]`` (95% bootstrap
interval), and a last row gives each metric's chance level. ``data`` is the score's fingerprint (rows with
different fingerprints were scored on different data or options). The number of test items and the counts
that describe the scored data (``image_location_pairs``, ``shots_used``) are facts about the task, not
metrics: they follow the task's name as ``n=...`` (a range where rows differ), never a column. Rendered as a
terminal table that fits :data:`WIDTH` columns (metric columns wrap into more sub-blocks), one Markdown table
per task, and a PNG with one panel per task (headline metric per version with interval whiskers and a dashed
chance line; matplotlib, Agg).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WIDTH = 120
MAX_MODEL = 28  # longer model names are shortened in the terminal table so a block fits WIDTH
FIXED = ("model", "version", "aliases", "data")
TOO_FEW_CELL = "too few items"


@dataclass
class Leaderboard:
    rows: list[dict[str, Any]] = field(default_factory=list)
    # rows: {"model", "version", "aliases", "scores": {task: value of the headline metric},
    #        "results": {task: {"metrics", "interval", "chance", "n_items", "counts", "fingerprint"}}}
    tasks: dict[str, str] = field(default_factory=dict)  # task -> headline metric

    # -- the cells -----------------------------------------------------------------------------------------
    def task_rows(self, task: str) -> list[dict[str, Any]]:
        """The rows that ran ``task``."""
        return [r for r in self.rows if task in r["results"]]

    def metrics(self, task: str) -> list[str]:
        """``task``'s metric columns: the headline metric first, then the others in their recorded order."""
        seen: list[str] = [self.tasks[task]]
        for row in self.task_rows(task):
            seen += [m for m in row["results"][task]["metrics"] if m not in seen]
        return seen

    def chance(self, task: str, metric: str) -> str:
        """The chance level of ``metric`` over the rows (``varies`` when rows were scored on different data)."""
        values = {round(r["results"][task]["chance"][metric], 6) for r in self.task_rows(task)
                  if metric in r["results"][task]["chance"]}
        return f"{values.pop():.4f}" if len(values) == 1 else ("varies" if values else "-")

    def sizes(self, task: str) -> str:
        """``n=400 items, 380 lightcurve_spectrum_pairs``: the test items and the task's counts over its rows."""
        found: dict[str, list[int]] = {}
        for row in self.task_rows(task):
            res = row["results"][task]
            for name, value in ({"items": res.get("n_items")} | dict(res.get("counts") or {})).items():
                if value:
                    found.setdefault(name, []).append(int(value))
        parts = [f"{min(v)}-{max(v)} {name}" if min(v) != max(v) else f"{v[0]} {name}" for name, v in found.items()]
        return f"n={', '.join(parts)}" if parts else ""

    def _cells(self, task: str, model_width: int | None = None) -> tuple[list[str], list[list[str]]]:
        from clipzoo.core.bench.table import format_value

        metrics = self.metrics(task)
        header = [*FIXED, *(m + (" *" if m == self.tasks[task] else "") for m in metrics)]
        body = []
        for row in self.task_rows(task):
            res = row["results"][task]
            entry = {"metrics": res["metrics"], "interval": res["interval"], "chance": res["chance"],
                     "n_items": res["n_items"] or 0, "info": [m for m in res["metrics"] if m not in res["chance"]]}
            cells = []
            for m in metrics:
                if m not in res["metrics"]:
                    cells.append("-")
                    continue
                value, interval, _ = format_value(entry, m)
                value = TOO_FEW_CELL if value.startswith("too few") else value
                cells.append(value if interval == "-" else f"{value} {interval}")
            name = row["model"]
            if model_width and len(name) > model_width:
                name = name[: model_width - 1] + "~"
            body.append([name, str(row["version"]), ",".join(row["aliases"]) or "-", (res["fingerprint"] or "-")[:8],
                         *cells])
        body.append(["chance", "", "", "", *(self.chance(task, m) for m in metrics)])
        return header, body

    # -- renderings ----------------------------------------------------------------------------------------
    def to_terminal(self, width: int = WIDTH) -> str:
        """One block per task, every line at most ``width`` columns (metric columns wrap into sub-blocks)."""
        from clipzoo.core.bench.table import column_widths, text_table

        if not self.rows:
            return "no registered versions yet (clipzoo registry register ...)"
        if not self.tasks:
            return "no version has benchmark results yet (clipzoo bench MODEL --task ...)"
        blocks = [f"values: value [95% bootstrap interval]; * = headline metric; data = fingerprint of the test data "
                  f"and options;\n\"{TOO_FEW_CELL}\": fewer than 10 test items or an interval wider than 0.5"]
        for task in self.tasks:
            header, body = self._cells(task, MAX_MODEL)
            widths = column_widths(header, body)
            fixed = len(FIXED)
            budget = width - (sum(widths[:fixed]) + 2 * fixed)
            chunks: list[list[int]] = [[]]
            used = 0
            for j in range(fixed, len(header)):  # greedy: as many metric columns per sub-block as fit
                need = widths[j] + 2
                if chunks[-1] and used + need > budget:
                    chunks.append([])
                    used = 0
                chunks[-1].append(j)
                used += need
            sizes = self.sizes(task)
            lines = [f"== {task}  (headline {self.tasks[task]})" + (f"  {sizes}" if sizes else "")]
            for cols in chunks:
                keep = list(range(fixed)) + cols
                lines.append(text_table([header[i] for i in keep], [[r[i] for i in keep] for r in body],
                                        align="llll" + "r" * len(cols)))
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def to_markdown(self) -> str:
        """One Markdown table per task (a heading each), with a chance row."""
        out = []
        for task in self.tasks:
            header, body = self._cells(task)
            out.append(f"### {task}\n")
            if self.sizes(task):
                out.append(f"{self.sizes(task)}\n")
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join(["---"] * len(FIXED) + ["---:"] * (len(header) - len(FIXED))) + "|")
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
            out.append("")
        return "\n".join(out) if out else "No benchmark results yet.\n"

    def figure(self):
        """The matplotlib figure: one panel per task, a point and whisker per version, a dashed chance line."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        if not self.rows or not self.tasks:
            raise ValueError("nothing to plot: no version has benchmark results (run clipzoo bench first)")
        tasks = list(self.tasks)
        ncols = 1 if len(tasks) == 1 else 2
        nrows = (len(tasks) + ncols - 1) // ncols
        heights = [max(1.6, 0.32 * max(len(self.task_rows(t)) for t in tasks) + 1.2)] * nrows
        fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, sum(heights)), squeeze=False)
        for ax in axes.flat[len(tasks):]:
            fig.delaxes(ax)
        for ax, task in zip(axes.flat, tasks):
            metric = self.tasks[task]
            rows = self.task_rows(task)
            y = np.arange(len(rows))
            values = np.array([r["results"][task]["metrics"].get(metric, np.nan) for r in rows])
            lows, highs = [], []
            for r, v in zip(rows, values):
                low, high = r["results"][task]["interval"].get(metric, (v, v))
                lows.append(v - low)
                highs.append(high - v)
            ax.errorbar(values, y, xerr=[lows, highs], fmt="o", capsize=3, color="tab:blue", label="95% interval")
            chance = [r["results"][task]["chance"].get(metric) for r in rows]
            chance = [c for c in chance if c is not None]
            if chance:
                ax.axvline(float(np.mean(chance)), color="tab:red", linestyle="--", linewidth=1, label="chance")
            ax.set_yticks(y, [f"{r['model']} v{r['version']}" + (f" ({','.join(r['aliases'])})" if r["aliases"] else "")
                              for r in rows], fontsize=7)
            ax.invert_yaxis()
            ax.set_xlim(0, max(1.0, float(np.nanmax(values + np.asarray(highs))) * 1.05 if len(values) else 1.0))
            ax.set_title(f"{task} ({metric})", fontsize=9)
            ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        return fig

    def to_png(self, path: str | Path) -> Path:
        """The :meth:`figure`, written atomically."""
        import os

        import matplotlib.pyplot as plt

        fig = self.figure()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, path)
        return path


def collect(tracking_uri: str | None = None, *, name: str | None = None, tasks: list[str] | None = None) -> Leaderboard:
    """Every version (of ``name``, or of all models; newest first) with its results per task."""
    from clipzoo.core.registry.client import list_models

    board = Leaderboard()
    models = list_models(tracking_uri)
    for model in models:
        if name is not None and model["name"] != name:
            continue
        for v in model["versions"]:
            results, scores = {}, {}
            for task, head in v["headline"].items():
                if tasks and task not in tasks:
                    continue
                board.tasks.setdefault(task, head["metric"])
                if board.tasks[task] != head["metric"]:
                    continue  # another headline metric: not the same measurement
                detail = v["bench_details"][task]
                results[task] = {"metrics": v["benchmarks"][task], "interval": detail["interval"] or {},
                                 "chance": detail["chance"] or {}, "n_items": detail["n_items"],
                                 "counts": detail.get("counts") or {},
                                 "fingerprint": detail["fingerprint"]}
                scores[task] = head["value"]
            board.rows.append({"model": model["name"], "version": v["version"], "aliases": v["aliases"],
                               "scores": scores, "results": results})
    if name is not None and not board.rows:
        from clipzoo.core.registry.errors import RegistryError

        known = ", ".join(m["name"] for m in models) or "none"
        raise RegistryError(f"no registered model {name!r}; registered: {known}")
    board.tasks = dict(sorted(board.tasks.items()))
    return board
