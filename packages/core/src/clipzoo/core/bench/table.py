"""The one aligned text table of core's reports (benchmark results, leaderboard blocks).

Hand-written rather than a dependency (tabulate, rich): it is a dozen lines, and the leaderboard needs
to know each column's width to wrap its metric columns within the terminal's 120 columns.
"""

from __future__ import annotations

from typing import Sequence


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
