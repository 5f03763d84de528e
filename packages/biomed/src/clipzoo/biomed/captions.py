"""UniMed-CLIP style captions: labels (or metadata alone) -> several caption variants per modality.

Templates live in ``templates/<modality>.txt`` next to this module, one per line (``#`` starts a comment).
A template names placeholders (``{label}``, ``{body_part}``, ``{plane}``, ``{stain}``, ``{modality_name}``);
it is used only when every placeholder it names has a value. Labelled images use the templates that name
``{label}``; unlabelled ones (e.g. a DICOM series with no findings table) the templates that do not.

A user template file (for example LLM-written variants) is either text (one template per line, for every
modality) or JSON ``{"<modality>": ["...", ...], "*": [...]}``; its templates come before the built-in ones,
or replace them with ``replace=True``.
"""

from __future__ import annotations

import json
import re
import string
from functools import lru_cache
from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"

# DICOM modality codes and common spellings -> template file stem.
MODALITY_ALIASES = {
    "cr": "xray", "dx": "xray", "rg": "xray", "xr": "xray", "x-ray": "xray", "xray": "xray", "radiograph": "xray",
    "mg": "xray",
    "ct": "ct",
    "mr": "mri", "mri": "mri",
    "us": "ultrasound", "ultrasound": "ultrasound",
    "fundus": "fundus", "op": "fundus", "retina": "fundus",
    "pathology": "pathology", "histopathology": "pathology", "sm": "pathology", "histology": "pathology",
    "microscopy": "microscopy", "gm": "microscopy",
}
MODALITY_NAMES = {
    "xray": "X-ray", "ct": "CT", "mri": "MRI", "ultrasound": "ultrasound", "fundus": "fundus",
    "pathology": "histopathology", "microscopy": "microscopy",
}


def canonical_modality(modality: str | None) -> str:
    """``"CR"`` -> ``"xray"``, ``"MR"`` -> ``"mri"``; unknown modalities map to ``"generic"``."""
    if not modality:
        return "generic"
    return MODALITY_ALIASES.get(modality.strip().lower(), "generic")


def join_labels(labels: list[str]) -> str:
    """``["a"]`` -> ``"a"``, ``["a", "b"]`` -> ``"a and b"``, ``["a", "b", "c"]`` -> ``"a, b and c"``."""
    labels = [humanize_label(l) for l in labels if l and l.strip()]
    if len(labels) <= 1:
        return labels[0] if labels else ""
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def humanize_label(label: str) -> str:
    """Folder/CSV label -> words: ``"diabetic_retinopathy"`` -> ``"diabetic retinopathy"``."""
    return re.sub(r"\s+", " ", label.replace("_", " ")).strip()


def _modality_key(modality: str) -> str:
    """A template-file modality name: ``"*"``, a template stem (``"xray"``) or an alias (``"CR"``)."""
    if modality == "*" or modality in MODALITY_NAMES or modality == "generic":
        return modality
    return canonical_modality(modality)


def _read_template_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@lru_cache(maxsize=None)
def builtin_templates(modality: str) -> tuple[str, ...]:
    path = TEMPLATE_DIR / f"{modality}.txt"
    if not path.is_file():
        path = TEMPLATE_DIR / "generic.txt"
    return tuple(_read_template_lines(path.read_text(encoding="utf-8")))


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class CaptionTemplates:
    """Caption templates per modality: the package's files plus an optional user file."""

    def __init__(self, user: dict[str, list[str]] | None = None, replace: bool = False):
        self.user = user or {}
        self.replace = replace
        for modality, templates in self.user.items():
            for t in templates:
                try:
                    _fields(t)
                except ValueError as exc:
                    raise ValueError(
                        f"caption template {t!r} ({modality}) is not a valid format string: {exc}"
                    ) from exc

    @classmethod
    def from_file(cls, path: str | Path | None, replace: bool = False) -> "CaptionTemplates":
        if path is None:
            return cls()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"caption template file {path} not found")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
                raise ValueError(f"{path}: expected a JSON object {{modality: [template, ...]}}")
            user = {_modality_key(k): v for k, v in data.items()}
        else:
            user = {"*": _read_template_lines(text)}
        return cls(user, replace=replace)

    def templates(self, modality: str) -> list[str]:
        modality = _modality_key(modality)
        mine = list(self.user.get(modality, [])) + list(self.user.get("*", []))
        if self.replace and mine:
            return mine
        return mine + list(builtin_templates(modality))

    def captions(
        self, modality: str, labels: list[str] | None = None, max_variants: int | None = None, **fields
    ) -> list[str]:
        """Caption variants for one image, in template order, without duplicates."""
        modality = _modality_key(modality)
        values = {k: str(v) for k, v in fields.items() if v not in (None, "")}
        values.setdefault("modality_name", MODALITY_NAMES.get(modality, "medical"))
        label_text = join_labels(list(labels or []))
        if label_text:
            values["label"] = label_text
        out: list[str] = []
        for template in self.templates(modality):
            names = _fields(template)
            if ("label" in names) != bool(label_text) or not names <= values.keys():
                continue
            text = template.format(**{k: values[k] for k in names})
            text = text[:1].upper() + text[1:]
            if text not in out:
                out.append(text)
            if max_variants and len(out) >= max_variants:
                break
        return out
