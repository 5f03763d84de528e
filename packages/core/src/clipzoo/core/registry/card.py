"""Model cards: Markdown rendered from ``registry/model_cards/model_card.md.j2`` with what a model package records.

A model package (:mod:`clipzoo.core.models.package`: ``save_pretrained`` output) holds ``config.json`` and
``model.safetensors``; the trainer adds ``train_summary.json``. The card reads from the summary (all keys optional):

- ``domain`` (else the domain of the data's ingest sources), ``architecture`` (model-config name),
  ``description``, ``intended_use``, ``limitations``, ``mlflow_run_id`` (the training run);
- ``training_config`` (or ``config``): the training configuration (rendered as YAML);
- ``data``: the training data, a list (or a name-keyed dict) of entries with ``name``/``path``,
  ``num_samples``, ``licenses`` ``{license: count}`` and ``fingerprint`` or ``shards`` (each with
  ``sha256``); a shard ``manifest.json`` dict is understood too (``ingest.counters.license``);
- ``final_metrics`` (or ``metrics``): final training metrics.

This is what ``clipzoo.core.train`` writes; a summary written by other tools may hold only some of it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipzoo.core.models import package as model_package
from clipzoo.core.registry import settings as registry_settings


@dataclass
class DataEntry:
    name: str
    num_samples: int | None
    licenses: dict[str, int]
    fingerprint: str
    # what `clipzoo curate` checked this dataset against (bench tasks / folders); [] curated but not
    # decontaminated; None: the data never went through curate, so nobody checked
    decontaminated_against: list[str] | None = None


@dataclass
class PackageInfo:
    """What the registry records about a model package folder."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    weights_sha256: str
    datasets: list[DataEntry] = field(default_factory=list)
    domain_override: str | None = None

    @property
    def domain(self) -> str:
        if self.domain_override or self.summary.get("domain"):
            return str(self.domain_override or self.summary["domain"])
        sources = {(d.get("source") or {}).get("domain") for d in _data_items(self.summary.get("data"))}
        sources.discard(None)
        return sources.pop() if len(sources) == 1 else "general"

    @property
    def training_config(self) -> dict[str, Any]:
        return dict(self.summary.get("training_config") or self.summary.get("config") or {})

    @property
    def train_metrics(self) -> dict[str, Any]:
        metrics = self.summary.get("final_metrics") or self.summary.get("metrics") or {}
        return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "step"}

    @property
    def architecture(self) -> str:
        arch = self.summary.get("architecture") or self.config.get("name") or self.config.get("architecture")
        if arch and arch != "custom":
            return str(arch)
        towers = self.config.get("towers")
        if isinstance(towers, dict):
            return "+".join(f"{m}:{t.get('type', '?')}" for m, t in sorted(towers.items()))
        return "open_clip" if "vision_cfg" in self.config else "unknown"

    @property
    def modalities(self) -> list[str]:
        towers = self.config.get("towers")
        if isinstance(towers, dict):
            return sorted(towers)
        return [m for m, key in (("image", "vision_cfg"), ("text", "text_cfg")) if key in self.config]

    @property
    def preprocess(self) -> dict[str, Any]:
        return dict(self.config.get("preprocess") or {})

    @property
    def data_fingerprint(self) -> str:
        """A hash of the training data's fingerprints ("none" when no data was recorded)."""
        if self.summary.get("data_fingerprint"):
            return str(self.summary["data_fingerprint"])
        if not self.datasets:
            return "none"
        h = hashlib.sha256()
        for fp in sorted(d.fingerprint for d in self.datasets):
            h.update(fp.encode())
        return h.hexdigest()[:16]

    @property
    def decontamination(self) -> str:
        """One line for tags and cards: what the training data was decontaminated against, per dataset."""
        if not self.datasets:
            return "unknown"
        parts = []
        for d in self.datasets:
            against = d.decontaminated_against
            parts.append(f"{d.name}: " + ("not checked" if against is None else ", ".join(against) or "none"))
        return "; ".join(parts)

    @property
    def licenses(self) -> dict[str, int | None]:
        """Samples per license over all datasets (``None``: a dataset named the license without counts)."""
        total: dict[str, int | None] = {}
        for d in self.datasets:
            for lic, n in d.licenses.items():
                before = total.get(lic, 0)
                total[lic] = None if n is None or before is None else before + int(n)
        return dict(sorted(total.items()))


def _data_items(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict):
        return [dict(v, name=v.get("name", k)) if isinstance(v, dict) else {"name": k} for k, v in data.items()]
    if isinstance(data, list):
        return [d if isinstance(d, dict) else {"name": str(d)} for d in data]
    return []


def _decontaminated_against(ingest: dict[str, Any]) -> list[str] | None:
    notes = ingest.get("notes") or {}
    if not notes.get("curated"):
        return None
    return [a if isinstance(a, str) else json.dumps(a, sort_keys=True, default=str)
            for a in notes.get("decontaminated_against") or []]


def _data_entries(data: Any) -> list[DataEntry]:
    entries = []
    for item in _data_items(data):
        ingest = item.get("ingest") or {}
        licenses = item.get("licenses") or (ingest.get("counters") or {}).get("license") or {}
        if isinstance(licenses, list):
            licenses = {str(lic): None for lic in licenses}
        num = item.get("num_samples", item.get("samples", ingest.get("samples_written")))
        shards = item.get("shards") or []
        fingerprint = item.get("fingerprint") or (
            hashlib.sha256("".join(str(s.get("sha256", "")) for s in shards).encode()).hexdigest()[:16]
            if shards else hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()[:16]
        )
        entries.append(DataEntry(
            name=str(item.get("name") or item.get("path") or "data"),
            num_samples=int(num) if num is not None else None,
            licenses={str(k): v for k, v in sorted(licenses.items())},
            fingerprint=str(fingerprint),
            decontaminated_against=_decontaminated_against(ingest),
        ))
    return entries


def read_package(path: str | Path, *, domain: str | None = None) -> PackageInfo:
    """What the registry records about a model package folder (read and checked by the package format)."""
    saved = model_package.read_package(path)
    return PackageInfo(
        path=saved.path,
        config={**saved.model, "preprocess": saved.preprocess},
        summary=saved.summary,
        weights_sha256=saved.weights_sha256(),
        datasets=_data_entries(saved.summary.get("data")),
        domain_override=domain,
    )


def render_model_card(
    info: PackageInfo,
    *,
    name: str,
    version: str | int | None = None,
    benchmarks: dict[str, dict[str, float]] | None = None,
    template: str | Path | None = None,
    bench_details: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The Markdown model card of ``info`` registered as ``name`` (``version``) with benchmark results.

    ``bench_details[task]`` (``n_items``, ``interval``, ``chance``, as read from the version's tags) adds
    each metric's 95% interval and chance level; without it those cells read ``-``.
    """
    import jinja2
    import yaml

    template_path = Path(template) if template else registry_settings.registry_dir() / registry_settings.CARD_TEMPLATE_NAME
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    tmpl = env.from_string(template_path.read_text(encoding="utf-8"))
    summary = info.summary
    totals = [d.num_samples for d in info.datasets]
    training_config = info.training_config
    return tmpl.render(
        name=name,
        version=str(version) if version is not None else None,
        description=summary.get("description") or f"A {info.domain} contrastive model trained with clipzoo.",
        domain=info.domain,
        architecture=info.architecture,
        modalities=info.modalities or ["unknown"],
        embed_dim=info.config.get("embed_dim", "unknown"),
        weights_sha256=info.weights_sha256,
        data_fingerprint=info.data_fingerprint,
        created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        intended_use=summary.get("intended_use") or registry_settings.for_domain("intended_use", info.domain),
        limitations=summary.get("limitations") or registry_settings.for_domain("limitations", info.domain),
        datasets=info.datasets,
        total_samples=sum(totals) if totals and None not in totals else None,
        licenses=info.licenses,
        preprocess_json=json.dumps(info.preprocess, indent=2, sort_keys=True),
        training_config=yaml.safe_dump(training_config, sort_keys=False).strip() if training_config else "",
        train_metrics=info.train_metrics,
        benchmarks={t: {m: float(v) for m, v in ms.items()} for t, ms in (benchmarks or {}).items()},
        benchmark_rows=benchmark_rows(benchmarks or {}, bench_details or {}),
    )


def benchmark_rows(benchmarks: dict[str, dict[str, float]], details: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """The card's benchmark table: one row per task and metric, with interval and chance where recorded."""
    from clipzoo.core.bench.table import format_value

    rows = []
    for task, metrics in benchmarks.items():
        detail = details.get(task) or {}
        entry = {"metrics": metrics, "interval": detail.get("interval") or {}, "chance": detail.get("chance") or {},
                 "n_items": detail.get("n_items") or 0, "info": [m for m in metrics if m not in (detail.get("chance") or {})]}
        for metric in metrics:
            value, interval, chance = format_value(entry, metric)
            rows.append({"task": task, "metric": metric, "value": value, "interval": interval, "chance": chance,
                         "n_items": str(detail["n_items"]) if detail.get("n_items") else "-"})
    return rows
