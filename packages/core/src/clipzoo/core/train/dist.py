"""Process-group setup for ``torchrun`` and the ``deepspeed`` launcher (one node or many).

Both launchers export RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; the deepspeed
launcher also passes ``--local_rank`` on the command line (the CLI accepts and ignores it). A plain
single process is rank 0 of a one-rank "group" without any of them (:func:`launch_env` reads them with
those defaults and never writes). DeepSpeed, asked to start its own communication, reads the same
variables from ``os.environ`` only (its ``init_distributed`` takes no rank or address) and without them
tries mpi4py; :func:`ensure_rendezvous_env`, called right before it, is therefore the one place clipzoo
writes ``os.environ``, and it adds only the variables that are missing.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: str  # "cpu" or "cuda:N"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RENDEZVOUS_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launch_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as a launcher exported them; an un-launched process is rank 0 of 1."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def ensure_rendezvous_env(info: DistInfo) -> dict[str, str]:
    """Export what a launcher would have for DeepSpeed's ``init_distributed`` (it reads only ``os.environ``).

    Sets only the :data:`RENDEZVOUS_VARS` that are missing (this process's rank, world size and local rank,
    127.0.0.1 and a free port), so a launcher's values are never changed; returns what it set.
    """
    wanted = {"RANK": str(info.rank), "WORLD_SIZE": str(info.world_size), "LOCAL_RANK": str(info.local_rank),
              "MASTER_ADDR": "127.0.0.1"}
    missing = {k: v for k, v in wanted.items() if k not in os.environ}
    if "MASTER_PORT" not in os.environ:
        missing["MASTER_PORT"] = str(_free_port())
    os.environ.update(missing)
    return missing


def init(device: str = "auto", backend: str = "auto") -> DistInfo:
    import torch
    import torch.distributed as dist

    rank, world, local = launch_env()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            from clipzoo.core.train.config import ConfigError

            raise ConfigError("train.device='cuda' but no CUDA device is visible; use train.device=cpu")
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if backend == "auto":
        backend = "nccl" if device.startswith("cuda") else "gloo"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: float) -> float:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def broadcast_object(obj):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
