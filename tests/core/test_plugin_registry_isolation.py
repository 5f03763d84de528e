"""A registration a test adds to the process-wide plugin registry does not outlive the test (tests/conftest.py)."""

from __future__ import annotations

from clipzoo.core.plugins import get_registry

LEAK = "test/registered-by-an-earlier-test"


def test_a_test_may_register_a_task(plugin_registry):
    plugin_registry.add_task(LEAK, lambda: None)
    assert LEAK in get_registry().tasks  # the very registry the CLI and the harness look names up in


def test_the_next_test_does_not_see_it():
    """Runs after the test above (pytest keeps a module's order): the name it added is gone, the rest is loaded."""
    registry = get_registry()
    assert LEAK not in registry.tasks
    assert "core/synthetic-shape" in registry.tasks and ("core", "images") in registry.sources
