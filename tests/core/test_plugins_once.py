"""A plugin's full ``register`` runs at most once per process, whatever order the registry is asked in."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint

from clipzoo.core import plugins


def _fake_plugins(tmp_path, monkeypatch, eps: list[EntryPoint]) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps if group == plugins.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(plugins, "_REGISTRY", None)  # a fresh process-wide registry, restored afterwards


def test_full_load_after_models_only_does_not_rerun_a_plugin_without_register_models(tmp_path, monkeypatch, caplog):
    """A plugin without register_models is registered whole by a models-only load; a later full load must not run
    its register again (a fresh lambda/partial task would then be 'registered twice' and the plugin dropped)."""
    (tmp_path / "zoo_fresh.py").write_text(
        "import functools\n"
        "CALLS = []\n"
        "def register(registry):\n"
        "    CALLS.append('register')\n"
        "    registry.add_tower('fresh', dict)\n"
        "    registry.add_task('zoo/lambda', lambda: 'lambda task')\n"
        "    registry.add_task('zoo/partial', functools.partial(dict, kind='partial'))\n")
    _fake_plugins(tmp_path, monkeypatch, [EntryPoint("fresh", "zoo_fresh:register", plugins.ENTRY_POINT_GROUP)])
    import zoo_fresh

    with caplog.at_level(logging.WARNING, logger=plugins.__name__):
        models = plugins.get_registry(kinds=plugins.MODEL_KINDS)
        assert "fresh" in models.towers and zoo_fresh.CALLS == ["register"]
        full = plugins.get_registry()
        again = plugins.get_registry(kinds=["tasks"])
    assert not [r for r in caplog.records if "failed to load" in r.getMessage()]
    assert full is models is again and zoo_fresh.CALLS == ["register"]
    assert full.tasks["zoo/lambda"]() == "lambda task" and full.tasks["zoo/partial"]() == {"kind": "partial"}
    assert full.loaded_plugins == ["fresh"] and full.loaded_kinds == plugins.ALL_KINDS


def test_register_models_then_register_each_run_once(tmp_path, monkeypatch):
    """A plugin with register_models: the models-only load runs only that hook, the full load runs register once,
    and further lookups of any kind run neither again."""
    (tmp_path / "zoo_hooked2.py").write_text(
        "CALLS = []\n"
        "def register_models(registry):\n"
        "    CALLS.append('register_models')\n"
        "    registry.add_tower('hooked2', dict)\n"
        "def register(registry):\n"
        "    CALLS.append('register')\n"
        "    register_models(registry)\n"
        "    registry.add_task('zoo/hooked-lambda', lambda: 1)\n")
    _fake_plugins(tmp_path, monkeypatch, [EntryPoint("hooked2", "zoo_hooked2:register", plugins.ENTRY_POINT_GROUP)])
    import zoo_hooked2

    plugins.get_registry(kinds=plugins.MODEL_KINDS)
    assert zoo_hooked2.CALLS == ["register_models"]
    full = plugins.get_registry()
    plugins.get_registry(kinds=plugins.MODEL_KINDS)
    plugins.get_registry()
    assert zoo_hooked2.CALLS == ["register_models", "register", "register_models"]  # register calls the hook itself
    assert "zoo/hooked-lambda" in full.tasks and full.loaded_plugins == ["hooked2"]
