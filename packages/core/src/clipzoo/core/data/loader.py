"""Resumable webdataset loader.

The pipeline, in each DataLoader worker of each rank::

    shard list (shuffled per epoch) -> split to this rank/worker -> tar reader (local, brace, pipe:, http)
      -> seeded shuffle buffer -> [sample-level split] -> skip what was already consumed -> decode
      -> transform -> batch (tagged with worker id and position)

Resuming: every batch carries its worker's position (samples emitted so far in the epoch). The
main-process :class:`ResumableLoader` records the position of each worker as batches are *consumed*
(prefetched batches do not count), and that record is part of the training checkpoint. On resume each
worker replays its deterministic stream and skips that many raw samples before decoding, so the epoch
goes on without repeating or skipping a sample. This needs the same shards, seed, batch size, world
size and worker count; :meth:`ResumableLoader.load_state_dict` refuses a mismatch.

Splitting: ``split="shards"`` gives each (rank, worker) slot its own shards (the scalable default);
``split="samples"`` has every slot read the same stream and keep every n-th sample, which makes a
2-process run's union of per-rank batches equal a 1-process run's batch (used to check DDP
equivalence, and the only way to use all slots when there are fewer shards than slots);
``"auto"`` picks shards when there are at least as many shards as slots.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch.utils.data

log = logging.getLogger(__name__)


def resolve_shards(spec: str | Path | list[str | Path]) -> list[str]:
    """Shard URLs from a shard folder (its manifest), a brace pattern, a URL, or a list of those."""
    from braceexpand import braceexpand

    from clipzoo.core.data.writer import MANIFEST_NAME, Manifest

    if isinstance(spec, (list, tuple)):
        return [url for item in spec for url in resolve_shards(item)]
    spec = str(spec)
    if spec.startswith(("pipe:", "http://", "https://", "s3://", "gs://")):
        return list(braceexpand(spec))
    path = Path(spec)
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            urls = Manifest.load(path).shard_paths(path)
        else:
            urls = sorted(str(p) for p in path.glob("*.tar"))
        if not urls:
            raise FileNotFoundError(f"{path}: shard folder holds no .tar shards")
        return urls
    urls = list(braceexpand(spec))
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(f"shard(s) not found: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    return urls


def _tar_samples(urls: list[str]) -> Iterator[dict[str, Any]]:
    import webdataset as wds

    yield from wds.tariterators.tarfile_samples(iter({"url": u} for u in urls))


def _shuffle(samples: Iterator[dict], bufsize: int, rng: random.Random) -> Iterator[dict]:
    """Buffer shuffle with an explicit RNG, so the order is a pure function of the seed."""
    if bufsize <= 1:
        yield from samples
        return
    buf: list[dict] = []
    for sample in samples:
        if len(buf) < bufsize:
            buf.append(sample)
            continue
        i = rng.randrange(bufsize)
        buf[i], sample = sample, buf[i]
        yield sample
    rng.shuffle(buf)
    yield from buf


def _decoder():
    import webdataset as wds

    return wds.autodecode.Decoder([wds.autodecode.imagehandler("pil")])


@dataclass
class StreamConfig:
    batch_size: int
    seed: int = 0
    shuffle_buffer: int = 1000
    split: str = "auto"  # shards | samples | auto
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.split not in ("shards", "samples", "auto"):
            raise ValueError(f"split must be 'shards', 'samples' or 'auto', not {self.split!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


class ShardStream(torch.utils.data.IterableDataset):
    """An IterableDataset of collated batches from webdataset shards (see the module docstring)."""

    def __init__(self, urls: list[str], transform: Callable[[dict], dict], cfg: StreamConfig):
        if not urls:
            raise ValueError("no shards to read")
        self.urls = list(urls)
        self.transform = transform
        self.cfg = cfg
        self.epoch = 0
        self.skip: dict[int, int] = {}

    def set_position(self, epoch: int, consumed: dict[int, int]) -> None:
        self.epoch = epoch
        self.skip = dict(consumed)

    def split_mode(self, num_workers: int) -> str:
        if self.cfg.split != "auto":
            return self.cfg.split
        return "shards" if len(self.urls) >= self.cfg.world_size * num_workers else "samples"

    def raw_samples(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """This slot's undecoded samples for the current epoch, in their deterministic order."""
        cfg = self.cfg
        slots = cfg.world_size * num_workers
        slot = cfg.rank * num_workers + worker
        mode = self.split_mode(num_workers)
        urls = list(self.urls)
        random.Random(f"{cfg.seed}/shards/{self.epoch}").shuffle(urls)
        if mode == "shards":
            urls = urls[slot::slots]
            rng = random.Random(f"{cfg.seed}/buffer/{self.epoch}/{slot}")
            yield from _shuffle(_tar_samples(urls), cfg.shuffle_buffer, rng)
        else:  # every slot reads the same stream and keeps its n-th samples
            rng = random.Random(f"{cfg.seed}/buffer/{self.epoch}")
            for i, sample in enumerate(_shuffle(_tar_samples(urls), cfg.shuffle_buffer, rng)):
                if i % slots == slot:
                    yield sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if hasattr(self.transform, "set_epoch"):
            self.transform.set_epoch(self.epoch)
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        decode = _decoder()
        skip = self.skip.get(worker, 0)
        position = 0
        batch: list[dict] = []
        from clipzoo.core.data.transforms import SampleError

        for raw in self.raw_samples(worker, num_workers):
            position += 1
            if position <= skip:
                continue
            try:
                batch.append(self.transform(decode(raw)))
            except SampleError as exc:  # one bad sample is reported and dropped, the run goes on
                log.warning("dropping sample from %s: %s", raw.get("__url__", "?"), exc)
                continue
            if len(batch) == self.cfg.batch_size:
                out = collate(batch)
                out["__worker__"] = worker
                out["__position__"] = position
                yield out
                batch = []
        # The incomplete last batch is dropped: contrastive losses want full, equal batches on every rank.


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors/arrays field by field; strings and other values become lists.

    Only fields every sample has are kept (e.g. a class index that some samples lack is dropped).
    """
    import numpy as np

    out: dict[str, Any] = {}
    common = set(samples[0]).intersection(*samples[1:])
    for name in (n for n in samples[0] if n in common):
        values = [s[name] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            out[name] = torch.stack(values)
        elif isinstance(first, np.ndarray):
            out[name] = torch.from_numpy(np.stack(values))
        elif isinstance(first, (int, float, bool)) and not isinstance(first, str):
            out[name] = torch.tensor(values)
        else:
            out[name] = values
    return out


@dataclass
class LoaderState:
    """The data position: which epoch, and how many samples each worker has delivered in it."""

    epoch: int = 0
    consumed: dict[int, int] = field(default_factory=dict)
    num_workers: int = 0
    world_size: int = 1
    batches: int = 0


class ResumableLoader:
    """Endless iteration over epochs of a :class:`ShardStream`, with a checkpointable position."""

    def __init__(self, stream: ShardStream, num_workers: int = 0, pin_memory: bool = False):
        self.stream = stream
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.state = LoaderState(num_workers=num_workers, world_size=stream.cfg.world_size)

    def epoch_batches(self) -> Iterator[dict[str, Any]]:
        """The rest of the current epoch (all of it, or what is left after a resume); then the epoch advances."""
        self.stream.set_position(self.state.epoch, self.state.consumed)
        loader = torch.utils.data.DataLoader(
            self.stream,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
        )
        delivered = 0
        for batch in loader:
            worker = int(batch.pop("__worker__"))
            self.state.consumed[worker] = int(batch.pop("__position__"))
            self.state.batches += 1
            delivered += 1
            yield batch
        if delivered == 0 and not self.state.consumed:
            raise RuntimeError(
                f"an epoch produced no batch: fewer samples per rank/worker than batch_size "
                f"({self.stream.cfg.batch_size}); lower the batch size or the worker count"
            )
        log.info("epoch %d done (%d batches)", self.state.epoch, delivered)
        self.state.epoch += 1
        self.state.consumed = {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield from self.epoch_batches()

    def state_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "epoch": s.epoch,
            "consumed": dict(s.consumed),
            "num_workers": s.num_workers,
            "world_size": s.world_size,
            "batches": s.batches,
            "batch_size": self.stream.cfg.batch_size,
            "seed": self.stream.cfg.seed,
            "num_shards": len(self.stream.urls),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {
            "num_workers": self.num_workers,
            "world_size": self.stream.cfg.world_size,
            "batch_size": self.stream.cfg.batch_size,
            "seed": self.stream.cfg.seed,
            "num_shards": len(self.stream.urls),
        }
        diff = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a} vs now {b}" for k, (a, b) in diff.items())
            raise ValueError(f"cannot resume the data position exactly: {detail}. Resume with the same settings.")
        self.state = LoaderState(
            epoch=int(state["epoch"]),
            consumed={int(k): int(v) for k, v in state["consumed"].items()},
            num_workers=self.num_workers,
            world_size=self.stream.cfg.world_size,
            batches=int(state.get("batches", 0)),
        )
