"""Image labels from a CSV file or from folder names (UniMed-style image-label datasets)."""

from __future__ import annotations

import csv
from pathlib import Path

PATH_COLUMNS = ("path", "image", "file", "filename", "image_path", "file_name", "img")
LABEL_COLUMNS = ("label", "labels", "finding", "findings", "class", "diagnosis", "category")


class LabelTable:
    """``path -> [labels]`` read from a CSV with a header row.

    The path column (``path``/``image``/``file``/``filename``... or ``path_column``) holds a path relative to
    the CSV's folder, an absolute path, or a bare file name; the label column (``label``/``labels``/
    ``finding``/``class``/``diagnosis``... or ``label_column``) one label or several separated by ``;`` or ``|``.
    """

    def __init__(self, csv_path: str | Path, path_column: str | None = None, label_column: str | None = None):
        self.csv_path = Path(csv_path)
        if not self.csv_path.is_file():
            raise FileNotFoundError(f"label CSV {self.csv_path} not found")
        with open(self.csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            self.path_column = self._pick(columns, path_column, PATH_COLUMNS, "path")
            self.label_column = self._pick(columns, label_column, LABEL_COLUMNS, "label")
            self.by_path: dict[str, list[str]] = {}
            self.by_name: dict[str, list[str]] = {}
            for row in reader:
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                raw = row.get(self.path_column, "")
                if not raw:
                    continue
                labels = [l.strip() for l in row.get(self.label_column, "").replace("|", ";").split(";") if l.strip()]
                p = Path(raw)
                full = p if p.is_absolute() else self.csv_path.parent / p
                self.by_path[str(full.resolve())] = labels
                self.by_name.setdefault(p.name, labels)

    def _pick(self, columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str) -> str:
        if wanted:
            if wanted not in columns:
                raise ValueError(f"{self.csv_path}: no column {wanted!r}; columns are {columns}")
            return wanted
        lower = {c.lower(): c for c in columns}
        for c in candidates:
            if c in lower:
                return lower[c]
        raise ValueError(
            f"{self.csv_path}: cannot tell which column holds the {what}; columns are {columns}. "
            f"Name it with --{what}-column."
        )

    def labels_for(self, path: str | Path) -> list[str] | None:
        """The labels of ``path`` (matched by full path, then by file name), or None if the CSV does not list it."""
        path = Path(path)
        found = self.by_path.get(str(path.resolve()))
        if found is None:
            found = self.by_name.get(path.name)
        return found

    def classes(self) -> list[str]:
        return sorted({l for labels in self.by_path.values() for l in labels})


def folder_label(path: Path, root: Path) -> str | None:
    """The name of the folder holding ``path`` below ``root`` (None for files directly in ``root``)."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    return rel.parent.name if len(rel.parts) > 1 else None
