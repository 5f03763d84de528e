"""The curation report: ``report.json`` (everything), ``report.md`` (readable) and ``report.png`` (funnel per step;
metadata entry counts before and after balancing on a log scale, head against tail) in the output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def funnel_lines(report: dict[str, Any]) -> list[str]:
    """One line per step: samples in, removed, out (the funnel the pipelines print)."""
    lines = []
    for step in report["steps"]:
        lines.append(f"{step['step']:<14} {step['in']:>8} -> {step['out']:>8}  (-{step['removed']})")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    out = [f"# Curation report", "",
           f"{report['samples_in']} samples in, {report['samples_out']} out ({report['seconds']} s, "
           f"{report['workers']} workers, {report.get('engine', 'process')} engine).", "", "## Inputs", ""]
    for item in report["inputs"]:
        src = " ".join(str(v) for v in item.get("source", {}).values())
        out.append(f"- `{item['path']}`: {item['samples']} samples in {item['shards']} shards {src}".rstrip())
    out += ["", "## Funnel", "", "| step | in | removed | out |", "|---|---:|---:|---:|"]
    for step in report["steps"]:
        out.append(f"| {step['step']} | {step['in']} | {step['removed']} | {step['out']} |")
    for step in report["steps"]:
        out += ["", f"## {step['step']}", "", f"options: `{json.dumps(step.get('options', {}), default=str)}`", ""]
        if step["step"] == "dedup":
            pairs = ", ".join(f"{k} {v}" for k, v in step.get("pairs", {}).items())
            out.append(f"duplicate pairs found: {pairs}; clusters: {step.get('clusters_total', 0)}")
            for c in step.get("clusters", [])[:10]:
                more = " ..." if len(c["removed"]) > 5 else ""
                out.append(f"- kept `{c['kept']}`, removed {len(c['removed'])}: "
                           + ", ".join(f"`{k}`" for k in c["removed"][:5]) + more)
        elif step["step"] == "decontaminate":
            found = ", ".join(f"{k} {v}" for k, v in step.get("found", {}).items())
            out.append(f"{step.get('reference_samples', 0)} benchmark samples; removed by {found}")
            for a in step.get("against", []):
                out.append(f"- against {a['kind']} `{a['name']}` ({a['samples']} samples)")
        elif step["step"] == "balance":
            counts = step.get("entry_counts", {})
            out.append(f"t = {step['t']}, seed {step['seed']}: {step['entries_matched']} of {step['entries_total']} "
                       f"entries matched, {step['head_entries']} head entries (count > t), "
                       f"{step['unmatched_pairs']} pairs matched none")
            out += ["", "| entry | before | after |", "|---|---:|---:|"]
            for entry, (before, after) in sorted(counts.items(), key=lambda kv: -kv[1][0])[:20]:
                out.append(f"| {entry} | {before} | {after} |")
        elif step["step"] == "filter":
            kinds = ", ".join(f"{k} {v}" for k, v in step.get("removed_by_kind", {}).items()) or "none"
            out.append(f"removed by: {kinds}")
            if "score_cut" in step:
                out.append(f"CLIP score cut {step['score_cut']:.3f}; quantiles "
                           + ", ".join(f"{q}: {v:.3f}" for q, v in step.get("score_quantiles", {}).items()))
    return "\n".join(out) + "\n"


def to_png(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    balance = next((s for s in report["steps"] if s["step"] == "balance" and s.get("entry_counts")), None)
    fig, axes = plt.subplots(1, 2 if balance else 1, figsize=(12 if balance else 6, 4), squeeze=False)
    ax = axes[0][0]
    names = [f["step"] for f in report["funnel"]]
    values = [f["samples"] for f in report["funnel"]]
    ax.bar(range(len(values)), values, color="#4c72b0")
    ax.set_xticks(range(len(values)), names)
    for i, v in enumerate(values):
        ax.text(i, v, str(v), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("samples")
    ax.set_title("curation funnel")
    if balance:
        ax = axes[0][1]
        rows = sorted(balance["entry_counts"].values(), key=lambda ba: -ba[0])
        ax.plot(range(1, len(rows) + 1), [b for b, _ in rows], label="before", color="#4c72b0")
        ax.plot(range(1, len(rows) + 1), [max(a, 0.8) for _, a in rows], label="after", color="#dd8452")
        ax.axhline(balance["t"], color="grey", linestyle="--", label=f"t = {balance['t']}")
        ax.set_yscale("log")
        ax.set_xlabel("entry rank (head left, tail right)")
        ax.set_ylabel("pairs matching the entry")
        ax.set_title("metadata entry counts")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, report: dict[str, Any]) -> None:
    from clipzoo.core.data.writer import atomic_write_text

    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(out / "report.md", to_markdown(report))
    to_png(report, out / "report.png")


def load_report(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no curation report; is {folder} a folder written by 'clipzoo curate'?")
    return json.loads(path.read_text(encoding="utf-8"))
