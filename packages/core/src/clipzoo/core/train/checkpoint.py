"""Atomic, keep-last-k training checkpoints with exact resume.

Layout: ``OUTPUT/checkpoints/step-00000200/`` holding the backend's state (``training_state.pt`` for
torch, ``deepspeed/`` for DeepSpeed), one ``rank{r}.pt`` per rank (RNG states and data position) and
``meta.json`` (step, samples seen, elapsed time, config). All of it is written into
``step-00000200.partial/`` first; rank 0 renames the folder only after every rank has finished, so a
folder without the ``.partial`` suffix is always whole. A killed run leaves at most a ``.partial``
folder, which the next start deletes. Several nodes need ``OUTPUT`` on a shared filesystem.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipzoo.core.data.writer import atomic_write_text
from clipzoo.core.train import dist as distu

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d{8})$")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    def __init__(self, root: str | Path, keep_last: int, info: distu.DistInfo):
        self.root = Path(root)
        self.keep_last = max(1, keep_last)
        self.info = info
        if info.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            for partial in self.root.glob("step-*.partial"):
                log.warning("removing incomplete checkpoint %s (a run was interrupted while saving)", partial)
                shutil.rmtree(partial, ignore_errors=True)
        distu.barrier()

    def complete(self) -> list[Path]:
        """Whole checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name) and (p / "meta.json").is_file()]
        return sorted(found, key=lambda p: p.name)

    def latest(self) -> Path | None:
        found = self.complete()
        return found[-1] if found else None

    def save(self, step: int, backend, rank_state: dict[str, Any], meta: dict[str, Any]) -> Path:
        final = self.root / f"step-{step:08d}"
        partial = self.root / f"step-{step:08d}.partial"
        if self.info.is_main:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        distu.barrier()
        backend.save(partial)
        torch.save({**rank_state, "rng": rng_state()}, partial / f"rank{self.info.rank}.pt")
        distu.barrier()
        if self.info.is_main:
            atomic_write_text(partial / "meta.json", json.dumps({"step": step, **meta}, indent=2, default=str))
            if final.exists():  # the same step saved again (e.g. final save right after an interval save)
                shutil.rmtree(final)
            partial.rename(final)
            for old in self.complete()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            log.info("checkpoint %s", final)
        distu.barrier()
        return final

    def load(self, folder: Path, backend) -> tuple[dict[str, Any], dict[str, Any]]:
        """Restore the backend; return (this rank's state, meta). RNG is restored last."""
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        rank_file = folder / f"rank{self.info.rank}.pt"
        if not rank_file.is_file():
            raise RuntimeError(
                f"{folder} has no state for rank {self.info.rank}: it was written by a run with "
                f"{meta.get('world_size', '?')} processes; resume with the same number"
            )
        backend.load(folder)
        state = torch.load(rank_file, map_location="cpu", weights_only=False)
        set_rng_state(state.pop("rng"))
        return state, meta
