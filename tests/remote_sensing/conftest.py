"""Fixtures for the remote_sensing tests (helpers live in ``rs_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def rs_data(shared_data) -> Path:
    return shared_data / "remote_sensing"
