"""Moved to :mod:`clipzoo.core.registry.leaderboard` (it reads only registry tags); this name stays importable."""

from clipzoo.core.registry.leaderboard import Leaderboard, collect

__all__ = ["Leaderboard", "collect"]
