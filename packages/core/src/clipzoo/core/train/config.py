"""Typed, frozen run configuration loaded from YAML, with ``--section.key=value`` overrides.

Values derived at run time (world size, resolved shard lists, device) live in the trainer's run state
and are never written back into the config; the config saved beside a checkpoint is what was asked for.

Every value is checked when the config loads: its type, its range, and for fields with a fixed set of
values (``Literal``) its membership. A wrong one is a :class:`ConfigError` whose one-line message names
the key, the value given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

# Unknown keys are errors; a number given where text is expected (run.name=2024) is taken as text.
_STRICT_KEYS = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]


@dataclass(frozen=True)
class RunCfg:
    __pydantic_config__ = _STRICT_KEYS
    name: str = "clipzoo"
    output_dir: str = "runs/clipzoo"
    seed: NonNegative = 0
    log_every: Positive = 10
    mlflow: bool = True
    tracking_uri: str | None = None
    experiment: str = "clipzoo-train"
    progress: bool = True


@dataclass(frozen=True)
class ModelCfg:
    __pydantic_config__ = _STRICT_KEYS
    config: str | dict = "clipzoo-tiny"  # a model-config name, JSON path, open_clip arch, or an inline dict
    pretrained: str | None = None  # local open_clip checkpoint for continued pre-training
    grad_checkpointing: bool = False


@dataclass(frozen=True)
class LossCfg:
    __pydantic_config__ = _STRICT_KEYS
    type: str | None = None  # clip | siglip | pairwise (clipzoo.core.losses.LOSSES); None = the model config's "loss"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataCfg:
    __pydantic_config__ = _STRICT_KEYS
    train: str | list[str] = ""  # shard folder(s), brace pattern(s) or URL(s)
    batch_size: Positive = 32  # per rank, per micro-batch
    workers: NonNegative = 0
    shuffle_buffer: NonNegative = 1000
    split: Literal["shards", "samples", "auto"] = "auto"  # see clipzoo.core.data.loader
    augment: bool = False  # random resized crops (scale 0.8-1.0) on images, unless the model sets its own
    on_bad_shard: Literal["stop", "skip"] = "stop"  # a shard that cannot be read: stop the run, or skip it
    allow_unmanifested: bool = False  # read a folder without manifest.json (a foreign set): its *.tar, unchecked
    storage_options: dict = field(default_factory=dict)  # fsspec options for s3:// etc.: endpoint_url, anon, ...
    cache_dir: str | None = None  # keep whole, verified copies of remote shards here (off when unset)
    cache_max_gb: float = 20.0  # the cache's bound; the least recently used shards go first


@dataclass(frozen=True)
class OptimCfg:
    __pydantic_config__ = _STRICT_KEYS
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: Annotated[float, Field(gt=0)] = 1e-6
    warmup_steps: NonNegative = 50
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    grad_clip: Annotated[float, Field(gt=0)] | None = 1.0
    accum_steps: Positive = 1  # contrastive (GradCache-style) accumulation: negatives from all micro-batches


@dataclass(frozen=True)
class TrainCfg:
    __pydantic_config__ = _STRICT_KEYS
    backend: Literal["torch", "deepspeed"] = "torch"
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # fp16 only on CUDA
    max_steps: Positive = 1000
    max_time_s: Annotated[float, Field(gt=0)] | None = None  # optional wall-time budget (not reproducible)
    checkpoint_every: Positive = 200
    keep_last: Positive = 2
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Positive | None = None  # torch intra-op threads per process (None: torch's default)
    dist_backend: Literal["auto", "gloo", "nccl"] = "auto"


@dataclass(frozen=True)
class Config:
    __pydantic_config__ = _STRICT_KEYS
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


# The dataclasses' own type hints (Literal, unions, Annotated ranges) drive the conversion: pydantic's
# TypeAdapter validates stdlib dataclasses from those hints, so YAML/CLI text ("5", "3e-4", "yes") becomes
# the declared type and nothing is decided by matching text inside a type's repr.
_ADAPTER: TypeAdapter[Config] | None = None


def _adapter() -> TypeAdapter[Config]:
    global _ADAPTER
    if _ADAPTER is None:
        _ADAPTER = TypeAdapter(Config)
    return _ADAPTER


def _known_keys(cls: type, path: list[str]) -> list[str]:
    for name in path:
        hints = {f.name: f.default for f in dataclasses.fields(cls)}
        sub = hints.get(name)
        if not dataclasses.is_dataclass(sub):
            return []
        cls = type(sub)
    return [f.name for f in dataclasses.fields(cls)]


def _one_line(exc: ValidationError) -> str:
    """The first problem of a validation error as one line: key, value given, what is allowed."""
    err = exc.errors()[0]
    # a union's member name ("float", "none", "literal['x']") ends some locations; keep the field path only
    names = [str(p) for p in err["loc"]]
    path: list[str] = []
    cls: type | None = Config
    for p in names:
        fields = {f.name: f for f in dataclasses.fields(cls)} if cls is not None else {}
        if p not in fields:
            if err["type"] in ("unexpected_keyword_argument", "extra_forbidden") and cls is not None:
                path.append(p)
            break
        path.append(p)
        default = fields[p].default
        cls = type(default) if dataclasses.is_dataclass(default) else None
    key = ".".join(path) or "config"
    if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        known = ", ".join(_known_keys(Config, path[:-1]))
        return f"unknown key {key}; known keys there: {known}"
    value = err.get("input")
    allowed = err["msg"].replace("Input should be", "expected").replace("Input", "value")
    # for unions, pydantic reports one error per member: name them all
    if len({tuple(e["loc"][: len(path)]) for e in exc.errors()}) == 1 and len(exc.errors()) > 1:
        allowed = "; or ".join(dict.fromkeys(e["msg"].replace("Input should be", "expected") for e in exc.errors()))
    return f"{key}={value!r}: {allowed}"


def validate(data: dict[str, Any]) -> Config:
    """A :class:`Config` from a plain mapping, every value checked against its declared type."""
    try:
        return _adapter().validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    import yaml

    if not item.startswith("--") or "=" not in item:
        raise ConfigError(f"override {item!r} must look like --section.key=value")
    key, raw = item[2:].split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. an unbalanced bracket): the text itself, checked against the key's type
    return key.split("."), value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> Config:
    """Config from a YAML file (or ``base`` dict), then ``--section.key=value`` overrides applied in order."""
    import yaml

    data: dict[str, Any] = json.loads(json.dumps(base)) if base else {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
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
    return validate(data)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
