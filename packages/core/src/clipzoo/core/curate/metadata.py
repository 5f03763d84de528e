"""Metadata entry lists for MetaCLIP balancing, and the matcher that finds them in captions.

Each domain ships a list (``<domain package>/metadata/entries.txt``: one entry per line, ``#`` comments)
and registers it with ``registry.add_metadata_entries(domain, path)``; users add their own files. An entry
matches a caption when the whole entry occurs in the normalised caption (MetaCLIP's substring matching) and
starts and ends on a word boundary, so the entry ``ct`` matches "a ct slice" but not "direct". The matcher
is an Aho-Corasick automaton (pyahocorasick): its cost grows with the caption length and the number of
matches, not with the number of entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from clipzoo.core.curate.signatures import normalize_text


class EntryError(ValueError):
    """A metadata entry file that cannot be used (missing, empty)."""


def read_entries(path: str | Path) -> list[str]:
    """The normalised entries of one file (blank lines and ``#`` comments skipped), in file order."""
    path = Path(path)
    if not path.is_file():
        raise EntryError(f"{path}: no such metadata entry file (one entry per line)")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = normalize_text(line.split("#", 1)[0])
        if text:
            out.append(text)
    if not out:
        raise EntryError(f"{path}: holds no metadata entries (one entry per line, '#' starts a comment)")
    return out


def load_entries(domains: Iterable[str] = (), files: Iterable[str | Path] = ()) -> tuple[list[str], list[str]]:
    """Entries of the named domains (as registered by their plugins) plus ``files``, first occurrence kept.

    Returns ``(entries, sources)``: the de-duplicated entry list and where it came from (for the report).
    """
    from clipzoo.core.plugins import UnknownNameError, get_registry

    paths: list[Path] = []
    registry = get_registry()
    for domain in domains:
        found = registry.metadata_entries.get(domain)
        if not found:
            known = ", ".join(sorted(registry.metadata_entries)) or "none"
            raise UnknownNameError(f"no metadata entries registered for domain {domain!r}; "
                                   f"domains with entries: {known}")
        paths.extend(found)
    paths.extend(Path(f) for f in files)
    seen: dict[str, None] = {}
    for path in paths:
        for entry in read_entries(path):
            seen.setdefault(entry, None)
    return list(seen), [str(p) for p in paths]


def _boundary(text: str, i: int) -> bool:
    return i < 0 or i >= len(text) or not text[i].isalnum()


class EntryMatcher:
    """Which entries (by index) occur in a normalised text as whole words."""

    def __init__(self, entries: Sequence[str]):
        import ahocorasick

        self.entries = list(entries)
        self._automaton = ahocorasick.Automaton()
        for index, entry in enumerate(self.entries):
            self._automaton.add_word(entry, (index, len(entry)))
        if self.entries:
            self._automaton.make_automaton()

    def match(self, text: str) -> list[int]:
        """Indices of the entries found in ``text`` (already normalised), each once, ascending."""
        if not self.entries:
            return []
        found = set()
        for end, (index, length) in self._automaton.iter(text):
            start = end - length + 1
            if _boundary(text, start - 1) and _boundary(text, end + 1):
                found.add(index)
        return sorted(found)
