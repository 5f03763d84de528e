"""Resumable webdataset loader.

The pipeline, in each DataLoader worker of each rank::

    shard list (shuffled per epoch) -> split to this rank/worker -> shard reader (local, pipe:, s3://, http(s)://;
      size checked against the manifest, bad shard -> stop or skip) -> seeded shuffle buffer -> [sample-level
      split] -> skip what was already consumed -> decode -> transform -> batch (tagged with worker id and position)

Which shards make the set, and how each is opened and read, is :mod:`clipzoo.core.data.shardset`.

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

Bad shards: with ``on_bad_shard="stop"`` (the default) the first unreadable shard ends the epoch with a
:class:`~clipzoo.core.data.shardset.BadShardError` naming it, raised in the main process (one line, no worker
traceback); with ``"skip"`` it is logged, counted (:attr:`ResumableLoader.bad_shards`) and passed over. Skipping
is deterministic for a given fault, so a resumed run replays the same stream.

The shuffle buffer and the rank/worker split are our own rather than webdataset's ``shuffle``/``split_by_*``:
webdataset seeds its buffer from one RNG per pipeline and splits by worker on its own worker info, and neither
gives an order that is a pure function of (seed, epoch, rank, worker) which a resumed worker can replay and skip.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch.utils.data

from clipzoo.core.data.shardset import BadShardError, ShardRef, ShardSetError, Storage, iter_samples
from clipzoo.core.data.transforms import collate

log = logging.getLogger(__name__)


def resolve_shards(
    spec: str | Path | list[str | Path], *, allow_unmanifested: bool = False, storage: Storage | None = None
) -> list[ShardRef]:
    """Shard URLs from a shard folder or folder URL (its manifest), a brace/glob pattern, a ``pipe:`` command,
    or a list of those; each is a :class:`~clipzoo.core.data.shardset.ShardRef` (a ``str`` that carries the
    manifest's size and sha256 to the reader). See :func:`~clipzoo.core.data.shardset.resolve_shard_set`."""
    from clipzoo.core.data.shardset import resolve_shard_set

    return resolve_shard_set(spec, allow_unmanifested=allow_unmanifested, storage=storage)


def storage_from_config(data: Any) -> Storage:
    """The :class:`~clipzoo.core.data.shardset.Storage` a trainer's ``data`` section asks for: its fsspec
    ``storage_options`` and the optional cache (``cache_dir``, bounded by ``cache_max_gb``)."""
    return Storage(options=dict(data.storage_options), cache_dir=data.cache_dir,
                   cache_max_bytes=int(data.cache_max_gb * (1 << 30)))


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
    on_bad_shard: str = "stop"  # stop | skip
    storage: Storage = field(default_factory=Storage)  # remote access and cache (clipzoo.core.data.shardset)

    def __post_init__(self) -> None:
        if self.split not in ("shards", "samples", "auto"):
            raise ValueError(f"split must be 'shards', 'samples' or 'auto', not {self.split!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.on_bad_shard not in ("stop", "skip"):
            raise ValueError(f"on_bad_shard must be 'stop' or 'skip', not {self.on_bad_shard!r}")


class ShardStream(torch.utils.data.IterableDataset):
    """An IterableDataset of collated batches from webdataset shards (see the module docstring)."""

    def __init__(self, shards: Sequence[str | ShardRef], transform: Callable[[dict], dict], cfg: StreamConfig):
        if not shards:
            raise ValueError("no shards to read")
        self.shards = [s if isinstance(s, ShardRef) else ShardRef(str(s)) for s in shards]
        self.transform = transform
        self.cfg = cfg
        self.epoch = 0
        self.skip: dict[int, int] = {}

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.shards]

    def set_position(self, epoch: int, consumed: dict[int, int]) -> None:
        self.epoch = epoch
        self.skip = dict(consumed)

    def split_mode(self, num_workers: int) -> str:
        if self.cfg.split != "auto":
            return self.cfg.split
        return "shards" if len(self.shards) >= self.cfg.world_size * num_workers else "samples"

    def raw_samples(
        self, worker: int, num_workers: int, on_skip: Callable[[ShardRef, str], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """This slot's undecoded samples for the current epoch, in their deterministic order."""
        cfg = self.cfg
        slots = cfg.world_size * num_workers
        slot = cfg.rank * num_workers + worker
        mode = self.split_mode(num_workers)
        shards = list(self.shards)
        random.Random(f"{cfg.seed}/shards/{self.epoch}").shuffle(shards)

        def read(refs: list[ShardRef]) -> Iterator[dict[str, Any]]:
            return iter_samples(refs, cfg.storage, cfg.on_bad_shard, on_skip)

        if mode == "shards":
            shards = shards[slot::slots]
            rng = random.Random(f"{cfg.seed}/buffer/{self.epoch}/{slot}")
            yield from _shuffle(read(shards), cfg.shuffle_buffer, rng)
        else:  # every slot reads the same stream and keeps its n-th samples
            rng = random.Random(f"{cfg.seed}/buffer/{self.epoch}")
            for i, sample in enumerate(_shuffle(read(shards), cfg.shuffle_buffer, rng)):
                if i % slots == slot:
                    yield sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Batches, each tagged ``__worker__``/``__position__``, then one ``__report__`` of this worker's epoch
        (samples read and dropped, members seen where a field was missing, shards skipped). A bad shard under
        the stop policy ends the stream with a ``__bad_shard__`` message instead, raised by the main process."""
        from clipzoo.core.data.transforms import MissingFieldError, SampleError

        if hasattr(self.transform, "set_epoch"):
            self.transform.set_epoch(self.epoch)
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        decode = _decoder()
        skip = self.skip.get(worker, 0)
        position, dropped = 0, 0
        missing: dict[str, dict[str, Any]] = {}  # modality -> the fields it looked for, the members samples had
        skipped: dict[str, str] = {}
        batch: list[dict] = []

        def on_skip(ref: ShardRef, reason: str) -> None:
            skipped[ref.url] = reason

        try:
            for raw in self.raw_samples(worker, num_workers, on_skip):
                position += 1
                if position <= skip:
                    continue
                try:
                    batch.append(self.transform(decode(raw)))
                except MissingFieldError as exc:  # said once per modality, counted, reported at the epoch's end
                    dropped += 1
                    seen = missing.setdefault(exc.modality, {"looked_for": list(exc.names), "members": set()})
                    if not seen["members"]:
                        log.warning("dropping sample from %s: %s", raw.get("__url__", "?"), exc)
                    seen["members"].update(exc.members)
                    continue
                except SampleError as exc:  # one bad sample is reported and dropped, the run goes on
                    dropped += 1
                    log.warning("dropping sample from %s: %s", raw.get("__url__", "?"), exc)
                    continue
                if len(batch) == self.cfg.batch_size:
                    out = collate(batch)
                    out["__worker__"] = worker
                    out["__position__"] = position
                    yield out
                    batch = []
        except BadShardError as exc:
            yield {"__worker__": worker, "__bad_shard__": str(exc)}
            return
        # The incomplete last batch is dropped: contrastive losses want full, equal batches on every rank.
        yield {"__worker__": worker, "__report__": {
            "read": position, "dropped": dropped, "skipped_shards": skipped,
            "missing": {m: {"looked_for": v["looked_for"], "members": sorted(v["members"])}
                        for m, v in missing.items()},
        }}


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
        self.bad_shards: dict[str, str] = {}  # shard URL -> why it was skipped (on_bad_shard="skip"), all epochs

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
        reports: list[dict[str, Any]] = []
        for batch in loader:
            worker = int(batch.pop("__worker__"))
            if "__bad_shard__" in batch:
                raise BadShardError(batch["__bad_shard__"])
            if "__report__" in batch:
                reports.append(batch["__report__"])
                for url, reason in batch["__report__"]["skipped_shards"].items():
                    self.bad_shards.setdefault(url, reason)
                continue
            self.state.consumed[worker] = int(batch.pop("__position__"))
            self.state.batches += 1
            delivered += 1
            yield batch
        if delivered == 0 and not self.state.consumed:
            raise ShardSetError(self._why_empty(reports))
        if self.bad_shards:
            log.warning("%d bad shard(s) skipped so far: %s", len(self.bad_shards), ", ".join(sorted(self.bad_shards)))
        log.info("epoch %d done (%d batches)", self.state.epoch, delivered)
        self.state.epoch += 1
        self.state.consumed = {}

    def _why_empty(self, reports: list[dict[str, Any]]) -> str:
        """Why an epoch made no batch, from the workers' reports: no usable field, or too few samples."""
        read = sum(r["read"] for r in reports)
        dropped = sum(r["dropped"] for r in reports)
        missing: dict[str, tuple[list[str], set[str]]] = {}
        for r in reports:
            for modality, v in r["missing"].items():
                missing.setdefault(modality, (v["looked_for"], set()))[1].update(v["members"])
        if read and dropped == read and missing:
            modality, (looked_for, members) = next(iter(missing.items()))
            return (f"no sample had a {modality} field: looked for {' / '.join(looked_for)}, the {read} samples read "
                    f"have members {sorted(members)}; check that data.train holds shards for this model's modalities")
        if read == 0 and self.bad_shards:
            return f"an epoch read no sample: every shard was bad and skipped ({len(self.bad_shards)})"
        return (f"an epoch produced no batch: fewer samples per rank/worker than batch_size "
                f"({self.stream.cfg.batch_size}); lower the batch size or the worker count")

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
            "num_shards": len(self.stream.shards),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {
            "num_workers": self.num_workers,
            "world_size": self.stream.cfg.world_size,
            "batch_size": self.stream.cfg.batch_size,
            "seed": self.stream.cfg.seed,
            "num_shards": len(self.stream.shards),
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
