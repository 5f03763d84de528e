"""Library log noise -> DEBUG: one line per skip in the user's log, the libraries' own detail only with --verbose.

pydicom logs a full traceback at ERROR for every frame a decoder plugin rejects, MONAI's ``LoadImage`` an INFO
line per reader it tries, nibabel prints header fixes through its own handler. Each of those is already
summarised by the source's one skip line. Logger filters apply only to records created on that very logger
(not to records of child loggers passing through), so the filter is added to every existing logger under the
noisy roots; :func:`quiet_library_logs` is called after the libraries are imported, when their loggers exist.
"""

from __future__ import annotations

import logging

NOISY_ROOTS = ("pydicom", "monai", "LoadImage", "nibabel")


class _ToDebug(logging.Filter):
    """Demote a record to DEBUG; let it through only when clipzoo logs at DEBUG (``--verbose``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger("clipzoo").isEnabledFor(logging.DEBUG)


_FILTER = _ToDebug()


_seen = {"loggers": -1}


def quiet_library_logs() -> None:
    """Add the demoting filter to each logger of :data:`NOISY_ROOTS` (idempotent; a no-op unless loggers were
    created since the last call, so readers may call it per file)."""
    registry = logging.root.manager.loggerDict
    if len(registry) == _seen["loggers"]:
        return
    _seen["loggers"] = len(registry)
    names = [n for n in list(registry) if n.split(".")[0] in NOISY_ROOTS]
    for name in set(names) | set(NOISY_ROOTS):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
