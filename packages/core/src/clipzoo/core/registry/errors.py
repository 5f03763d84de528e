"""Registry errors: each message is one line saying what is wrong and what exists instead."""

from __future__ import annotations


class RegistryError(Exception):
    """A model reference or registry operation that cannot be carried out (unknown name, version, alias...)."""


class PromotionRefused(RegistryError):
    """Promotion to a guarded alias refused: the candidate does not match the current holder's benchmark score."""
