"""Atomic, keep-last-k, verified training checkpoints with exact resume.

Layout: ``OUTPUT/checkpoints/step-00000200/`` holding the backend's state (``training_state.pt`` for
torch, ``deepspeed/`` for DeepSpeed), one ``rank{r}.pt`` per rank (RNG states and data position),
``meta.json`` (step, samples seen, elapsed time) and, written last, ``index.json``: the size and sha256
of every other file. All of it is written into ``step-00000200.partial/`` first; rank 0 renames the
folder only after every rank has finished, so a folder without the ``.partial`` suffix was whole when
it was written. A killed run leaves at most a ``.partial`` folder, which the next start deletes. Several
nodes need ``OUTPUT`` on a shared filesystem.

Resume takes the newest checkpoint whose files match its index and that loads; a checkpoint damaged
since (a truncated file, a missing index, a file that does not load) is skipped with one warning that
names the file and what is wrong, and the one before it is used. Every file is read with
``torch.load(weights_only=True)``: a checkpoint folder is untrusted input, and a pickle could run code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
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
INDEX_NAME = "index.json"


class CheckpointError(Exception):
    """No usable checkpoint where one is needed, or one that does not fit this run; the message says why."""


class BadCheckpointFile(Exception):
    """One checkpoint file that is damaged or unsafe to load; the message names it and says what is wrong."""


def load_file(path: Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (tensors and plain containers only); errors name the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; the line naming the refused global is the one that matters
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "Unsupported global" in ln or "Unsupported operand" in ln), lines[0])
        raise BadCheckpointFile(f"{path}: refused to unpickle (not plain tensors/containers): {detail}") from None
    except Exception as exc:
        raise BadCheckpointFile(f"{path}: cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


# -- RNG states as tensors and plain numbers (loadable with weights_only=True) ------------------
def rng_state() -> dict[str, Any]:
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the index: every file's size and sha256, written last ---------------------------------------
def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_index(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != INDEX_NAME)
    index = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    atomic_write_text(folder / INDEX_NAME, json.dumps({"files": index}, indent=1, sort_keys=True))


def verify(folder: Path) -> str | None:
    """What is wrong with ``folder`` against its index (naming the file), or None when it is whole."""
    index_path = folder / INDEX_NAME
    if not index_path.is_file():
        return f"{index_path} is missing (the save did not finish, or the folder was damaged)"
    try:
        files = json.loads(index_path.read_text(encoding="utf-8"))["files"]
        items = [(str(name), int(entry["bytes"]), str(entry["sha256"])) for name, entry in files.items()]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{index_path} is not a whole index ({type(exc).__name__}: {exc})"
    if not items:
        return f"{index_path} lists no files"
    for name, size, digest in items:
        path = folder / name
        if ".." in Path(name).parts or not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != size:
            return f"{path} has {path.stat().st_size} bytes, the index says {size} (truncated or overwritten)"
        if _sha256(path) != digest:
            return f"{path} does not match its sha256 in {INDEX_NAME} (damaged or replaced)"
    return None


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
        """Finished checkpoint folders (renamed from ``.partial``), oldest first; :meth:`resume` verifies them."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
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
            write_index(partial)  # last: a folder with a whole index had every file written
            if final.exists():  # the same step saved again (e.g. final save right after an interval save)
                shutil.rmtree(final)
            partial.rename(final)
            for old in self.complete()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            log.info("checkpoint %s", final)
        distu.barrier()
        return final

    def load(self, folder: Path, backend) -> tuple[dict[str, Any], dict[str, Any]]:
        """Restore the backend from one checkpoint; return (this rank's state, meta). RNG is restored last.
        Raises :class:`BadCheckpointFile` for a damaged or unsafe file, :class:`CheckpointError` for a
        checkpoint that does not fit this run."""
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadCheckpointFile(f"{folder / 'meta.json'}: {exc}") from None
        rank_file = folder / f"rank{self.info.rank}.pt"
        if not rank_file.is_file():
            raise CheckpointError(
                f"{folder} has no state for rank {self.info.rank}: it was written by a run with "
                f"{meta.get('world_size', '?')} processes; resume with the same number"
            )
        state = load_file(rank_file)
        backend.load(folder)
        set_rng_state(state.pop("rng"))
        return state, meta

    def resume(self, backend) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
        """Load the newest whole checkpoint: (folder, this rank's state, meta); None when there is none yet.

        A damaged one is skipped with one warning and the previous one tried; every rank takes the same
        decision (a file may be bad for one rank only). Raises :class:`CheckpointError` when checkpoints
        exist but none is whole."""
        found = self.complete()
        if not found:
            return None
        problems = []
        for folder in reversed(found):
            problem = verify(folder)
            loaded = None
            if problem is None:
                try:
                    loaded = self.load(folder, backend)
                except BadCheckpointFile as exc:
                    problem = str(exc)
            # one rank's bad file makes the checkpoint bad for all, or the ranks would resume from different steps
            if distu.all_reduce_mean(0.0 if problem else 1.0) == 1.0 and loaded is not None:
                return folder, *loaded
            problem = problem or "another rank could not load its part of it"
            problems.append(problem)
            if self.info.is_main:
                log.warning("skipping checkpoint %s: %s; trying the one before it", folder.name, problem)
        raise CheckpointError(
            f"no whole checkpoint in {self.root} ({len(found)} damaged, newest: {problems[0]}); "
            f"delete {self.root} to start the run over"
        )
