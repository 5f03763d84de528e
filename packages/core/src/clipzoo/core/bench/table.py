"""The one aligned text table of core's reports (benchmark results, leaderboard blocks), and the cells of a
metric (value, interval, chance; "too few items to measure" when the data cannot support the value).

Standard library only: the registry's card and leaderboard format with it without importing the harness.

Hand-written rather than a dependency (tabulate, rich): it is a dozen lines, and the leaderboard needs
to know each column's width to wrap its metric columns within the terminal's 120 columns.
"""

from __future__ import annotations

from typing import Any, Sequence

MIN_TEST_ITEMS = 10
MAX_INTERVAL_WIDTH = 0.5
TOO_FEW = "too few items to measure"  # a value on fewer items, or with a wider 95% interval


def column_widths(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """The width of each column: its longest cell."""
    return [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """``header``, a rule and ``rows``, columns two spaces apart; ``align[i]`` is ``l`` or ``r`` (default ``l``)."""
    widths = column_widths(header, rows)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if align[i:i + 1] == "r" else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def measurable(entry: dict[str, Any], metric: str) -> bool:
    """Whether a task result supports its ``metric``: enough test items under that metric (its ``support``; the
    task's item count for results written before supports were recorded) and an interval no wider than the bound."""
    interval = (entry.get("interval") or {}).get(metric)
    if interval is None:
        return metric in entry.get("info", ()) or not entry.get("interval")  # info values; point-only tasks
    low, high = interval
    items = (entry.get("support") or {}).get(metric, entry.get("n_items", 0))
    return items >= MIN_TEST_ITEMS and (high - low) <= MAX_INTERVAL_WIDTH


def format_value(entry: dict[str, Any], metric: str) -> tuple[str, str, str]:
    """``(value, interval, chance)`` cells of one metric; an unsupported value reads "too few items to measure"."""
    value = entry["metrics"][metric]
    interval = (entry.get("interval") or {}).get(metric)
    chance = (entry.get("chance") or {}).get(metric)
    ci = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "-"
    text = f"{value:.4f}" if measurable(entry, metric) else TOO_FEW
    return text, ci, f"{chance:.4f}" if chance is not None else "-"
