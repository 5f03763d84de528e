"""Plugin registry: how domain packages extend core without core importing them.

A domain distribution declares an entry point in the ``clipzoo.plugins`` group whose value is a
``register(registry)`` function. Core loads those entry points lazily, the first time something asks
the registry for a source, task, tower or model config. ``register`` must stay cheap: import heavy
libraries (torch, astropy, pydicom, ...) inside the functions it registers, not at module level, so
that ``clipzoo --help`` stays fast.

Building a model needs only towers and model configs (:data:`MODEL_KINDS`), so
``get_registry(kinds=MODEL_KINDS)`` runs each plugin's ``register_models(registry)`` instead: a function
beside ``register`` in the entry point's module that adds only those (``register`` calls it too). It keeps
``create_model("name")`` from importing every ingest source and benchmark task; a plugin without
``register_models`` is loaded whole, so its towers are still found.

Registered objects:
- sources: ingest sources (subclasses of :class:`clipzoo.core.ingest.Source`), keyed ``(domain, name)``.
- tasks: benchmark task factories, keyed by task name (``"biomed/fundus-zeroshot"``).
- towers: encoder factories for non-open_clip modalities, keyed by ``type`` name.
- model config folders: JSON architecture files, looked up by file stem.
- pipelines: YAML run recipes shipped by a package, keyed by name.
- metadata entries: per-domain entry lists (one entry per line) for MetaCLIP balancing in ``clipzoo curate``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "clipzoo.plugins"
MODELS_HOOK = "register_models"  # the models-only registration beside a plugin's register()
FULL_HOOK = "register"  # the entry point itself: registers everything the plugin has
#: every kind of registration (the names of the registry's fields, model_configs for model_config_dirs)
ALL_KINDS = frozenset({"sources", "tasks", "towers", "model_configs", "pipelines", "metadata_entries"})
#: what building a model looks up; register_models adds exactly these
MODEL_KINDS = frozenset({"towers", "model_configs"})


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists what exists instead."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a readable sentence.
        return str(self.args[0])


@dataclass
class PluginRegistry:
    sources: dict[tuple[str, str], type] = field(default_factory=dict)
    tasks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    towers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    model_config_dirs: list[Path] = field(default_factory=list)
    pipelines: dict[str, Path] = field(default_factory=dict)
    metadata_entries: dict[str, list[Path]] = field(default_factory=dict)
    #: per entry point, the hook that has run on this registry: MODELS_HOOK (models only) or FULL_HOOK (everything)
    plugin_hooks: dict[str, str] = field(default_factory=dict)
    #: the kinds whose registrations have run (MODEL_KINDS after a models-only load, ALL_KINDS after a full one)
    loaded_kinds: frozenset[str] = frozenset()

    @property
    def loaded_plugins(self) -> list[str]:
        """The entry points loaded so far, in load order."""
        return list(self.plugin_hooks)

    # -- registration -------------------------------------------------------------------------
    def add_source(self, source_cls: type) -> None:
        key = (source_cls.domain, source_cls.name)
        if key in self.sources and self.sources[key] is not source_cls:
            raise ValueError(f"ingest source {key} registered twice")
        self.sources[key] = source_cls

    def add_task(self, name: str, factory: Callable[..., Any]) -> None:
        if name in self.tasks and self.tasks[name] is not factory:
            raise ValueError(f"benchmark task {name!r} registered twice")
        self.tasks[name] = factory

    def add_tower(self, type_name: str, factory: Callable[..., Any]) -> None:
        if type_name in self.towers and self.towers[type_name] is not factory:
            raise ValueError(f"tower type {type_name!r} registered twice")
        self.towers[type_name] = factory

    def add_model_config_dir(self, path: str | Path) -> None:
        path = Path(path)
        if path not in self.model_config_dirs:
            self.model_config_dirs.append(path)

    def add_pipeline(self, name: str, path: str | Path) -> None:
        self.pipelines[name] = Path(path)

    def add_metadata_entries(self, domain: str, path: str | Path) -> None:
        """A file of metadata entries (one per line) that ``clipzoo curate``'s balance step uses for ``domain``."""
        paths = self.metadata_entries.setdefault(domain, [])
        if Path(path) not in paths:
            paths.append(Path(path))

    # -- lookup ---------------------------------------------------------------------------------
    def source(self, domain: str, name: str) -> type:
        try:
            return self.sources[(domain, name)]
        except KeyError:
            known = ", ".join(f"{d} {n}" for d, n in sorted(self.sources)) or "none"
            raise UnknownNameError(
                f"no ingest source '{domain} {name}'; available: {known}"
                + ("" if domain in self.domains() else f" (is clipzoo-{domain.replace('_', '-')} installed?)")
            ) from None

    def task(self, name: str) -> Callable[..., Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown benchmark task {name!r}; available: {', '.join(sorted(self.tasks)) or 'none'}"
            ) from None

    def tower(self, type_name: str) -> Callable[..., Any]:
        try:
            return self.towers[type_name]
        except KeyError:
            raise UnknownNameError(
                f"unknown tower type {type_name!r}; available: {', '.join(sorted(self.towers)) or 'none'}"
            ) from None

    def model_config_path(self, name: str) -> Path | None:
        for folder in self.model_config_dirs:
            candidate = folder / f"{name}.json"
            if candidate.is_file():
                return candidate
        return None

    def model_config_names(self) -> list[str]:
        return sorted({p.stem for d in self.model_config_dirs for p in d.glob("*.json")})

    def domains(self) -> list[str]:
        return sorted({d for d, _ in self.sources})


_REGISTRY: PluginRegistry | None = None


def _register_core(registry: PluginRegistry, *, models_only: bool) -> None:
    """Core's own registrations go through the same door as the plugins'."""
    from clipzoo.core import builtin

    (builtin.register_models if models_only else builtin.register)(registry)


def _plugin_hook(ep, *, models_only: bool) -> tuple[str, Callable[[PluginRegistry], None]]:
    """The hook to run for entry point ``ep`` and its name: its ``register`` (:data:`FULL_HOOK`), or for a
    models-only load the module's ``register_models`` when it has one (a plugin without one is registered whole)."""
    if models_only:
        hook = getattr(import_module(ep.module), MODELS_HOOK, None)
        if hook is not None:
            return MODELS_HOOK, hook
        log.debug("clipzoo plugin %r has no %s(); registering all of it", ep.name, MODELS_HOOK)
    return FULL_HOOK, ep.load()


def _load(registry: PluginRegistry, *, models_only: bool) -> None:
    """Run each plugin's hook for this load, skipping what an earlier load already covered.

    A plugin's full ``register`` runs at most once per registry: running it again would re-add tasks or towers
    built fresh on each call (a ``functools.partial``, a lambda), which the registry rejects as registered twice.
    A models-only load after any earlier load, and a full load after a full ``register``, run nothing for it.
    """
    _register_core(registry, models_only=models_only)
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        done = registry.plugin_hooks.get(ep.name)
        if done == FULL_HOOK or (models_only and done is not None):
            continue
        try:
            hook_name, hook = _plugin_hook(ep, models_only=models_only)
            hook(registry)
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            log.warning("clipzoo plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        registry.plugin_hooks[ep.name] = hook_name


def get_registry(kinds: Iterable[str] | None = None) -> PluginRegistry:
    """The process-wide registry with core's and every installed plugin's registrations loaded.

    ``kinds`` names what the caller looks up (see :data:`ALL_KINDS`; default all). When that is only towers
    and model configs, only the ``register_models`` hooks run; asking for more later runs the full
    ``register`` functions on the same registry, except for a plugin whose ``register`` already ran (one without
    ``register_models``): no plugin's ``register`` runs twice.
    """
    global _REGISTRY
    wanted = ALL_KINDS if kinds is None else frozenset(kinds)
    if not wanted <= ALL_KINDS:
        raise ValueError(f"unknown registration kind(s) {', '.join(sorted(wanted - ALL_KINDS))}; "
                         f"known: {', '.join(sorted(ALL_KINDS))}")
    if _REGISTRY is None:
        _REGISTRY = PluginRegistry()
    registry = _REGISTRY
    if wanted <= registry.loaded_kinds:
        return registry
    models_only = wanted <= MODEL_KINDS
    _load(registry, models_only=models_only)
    registry.loaded_kinds = MODEL_KINDS if models_only else ALL_KINDS
    return registry
