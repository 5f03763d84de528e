"""Typed, frozen run configuration loaded from YAML, with ``--section.key=value`` overrides.

Values derived at run time (world size, resolved shard lists, device) live in the trainer's run state
and are never written back into the config; the config saved beside a checkpoint is what was asked for.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints


@dataclass(frozen=True)
class RunCfg:
    name: str = "clipzoo"
    output_dir: str = "runs/clipzoo"
    seed: int = 0
    log_every: int = 10
    mlflow: bool = True
    tracking_uri: str | None = None
    experiment: str = "clipzoo-train"
    progress: bool = True


@dataclass(frozen=True)
class ModelCfg:
    config: str | dict = "clipzoo-tiny"  # a model-config name, JSON path, open_clip arch, or an inline dict
    pretrained: str | None = None  # local open_clip checkpoint for continued pre-training
    grad_checkpointing: bool = False


@dataclass(frozen=True)
class LossCfg:
    type: str | None = None  # clip | siglip | pairwise; None = the model config's "loss", else clip
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataCfg:
    train: str | list = ""  # shard folder(s), brace pattern(s) or URL(s)
    batch_size: int = 32  # per rank, per micro-batch
    workers: int = 0
    shuffle_buffer: int = 1000
    split: str = "auto"  # shards | samples | auto (see clipzoo.core.data.loader)
    augment: bool = False  # random resized crops (scale 0.8-1.0) on images, unless the model sets its own


@dataclass(frozen=True)
class OptimCfg:
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    accum_steps: int = 1  # contrastive (GradCache-style) accumulation: negatives from all micro-batches


@dataclass(frozen=True)
class TrainCfg:
    backend: str = "torch"  # torch | deepspeed
    zero_stage: int = 2
    offload_optimizer: bool = False
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 only on CUDA)
    max_steps: int = 1000
    max_time_s: float | None = None
    checkpoint_every: int = 200
    keep_last: int = 2
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch intra-op threads per process (None: torch's default)
    dist_backend: str = "auto"  # auto | gloo | nccl


@dataclass(frozen=True)
class Config:
    run: RunCfg = RunCfg()
    model: ModelCfg = ModelCfg()
    loss: LossCfg = LossCfg()
    data: DataCfg = DataCfg()
    optim: OptimCfg = OptimCfg()
    train: TrainCfg = TrainCfg()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A config value or key that is wrong; the message says which and what is allowed."""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert YAML/CLI values to the field's declared type (only the types used above)."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{where} may not be null")
    if hint is bool:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return bool(value)
    if hint is int:
        return int(value)
    if hint is float or "float" in text and not isinstance(value, (list, dict)):
        return float(value)
    if hint is tuple:
        return tuple(value)
    return value


def _build(cls, data: dict[str, Any], where: str):
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown key(s) in {where or 'config'}: {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        sub = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            if not isinstance(value, dict):
                raise ConfigError(f"{sub} must be a mapping")
            kwargs[f.name] = _build(hints[f.name], value, sub)
        else:
            kwargs[f.name] = _coerce(value, hints[f.name], sub)
    return cls(**kwargs)


def _parse_override(item: str) -> tuple[list[str], Any]:
    import yaml

    if not item.startswith("--") or "=" not in item:
        raise ConfigError(f"override {item!r} must look like --section.key=value")
    key, raw = item[2:].split("=", 1)
    return key.split("."), yaml.safe_load(raw) if raw != "" else ""


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> Config:
    """Config from a YAML file (or ``base`` dict), then ``--section.key=value`` overrides applied in order."""
    import yaml

    data: dict[str, Any] = json.loads(json.dumps(base)) if base else {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a training config must be a YAML mapping")
        data = _deep_merge(data, loaded)
    for item in overrides or []:
        keys, value = _parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {k} is not a section")
        node[keys[-1]] = value
    return _build(Config, data, "")


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
