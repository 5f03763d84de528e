"""Training backends: plain torch (one process or DDP) and DeepSpeed ZeRO 1/2/3.

Both expose the same small surface to the training loop: ``module`` (what to call forward on),
``backward(loss)`` (sums gradients over micro-steps: contrastive accumulation needs the sum, not the
mean), ``no_sync()`` for non-final micro-steps, ``step()`` at the accumulation boundary,
``autocast()``, ``save(dir)`` / ``load(dir)`` of model + optimiser + scheduler (+ scaler), and ``lr``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

import torch

from clipzoo.core.train.config import Config, ConfigError
from clipzoo.core.train.dist import DistInfo

log = logging.getLogger(__name__)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, embeddings-like 0/1-dim tensors and the temperature."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_" in name or "norm" in name or "bn" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(cfg: Config):
    warmup, total, floor = cfg.optim.warmup_steps, max(1, cfg.train.max_steps), cfg.optim.min_lr_ratio

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def make_optimizer(model: torch.nn.Module, cfg: Config, *, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW. ``fused`` (torch backend) runs the update as one kernel per device: on a CPU it cuts the step
    of a tiny CLIP, dominated by the 49k-token embedding's update, by about a third.
    A torch AdamW handed to DeepSpeed compiles nothing; a DeepSpeed-config "Adam" would JIT fused_adam."""
    return torch.optim.AdamW(
        param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
        fused=fused or None,
    )


def _autocast_dtype(precision: str):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module, cfg: Config, dist: DistInfo):
        self.cfg, self.dist = cfg, dist
        if cfg.train.precision == "fp16" and not dist.device.startswith("cuda"):
            raise ConfigError("train.precision='fp16' needs a CUDA device; use bf16 or fp32 on a CPU")
        self.raw_model = model.to(dist.device)
        if dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [dist.local_rank] if dist.device.startswith("cuda") else None
            self.module = DistributedDataParallel(self.raw_model, device_ids=ids)
        else:
            self.module = self.raw_model
        self.optimizer = make_optimizer(self.raw_model, cfg, fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.precision == "fp16")

    def autocast(self):
        dtype = _autocast_dtype(self.cfg.train.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.dist.device.split(":")[0], dtype=dtype)

    def no_sync(self):
        return self.module.no_sync() if self.dist.distributed else contextlib.nullcontext()

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.dist.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def backward(self, loss: torch.Tensor, *, boundary: bool = True) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> float | None:
        grad_norm = None
        if self.cfg.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.cfg.optim.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return grad_norm

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def save(self, folder: Path) -> None:
        if self.dist.is_main:
            torch.save(
                {
                    "model": self.raw_model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                },
                folder / "training_state.pt",
            )

    def load(self, folder: Path) -> None:
        from clipzoo.core.train.checkpoint import load_file

        state = load_file(folder / "training_state.pt", map_location=self.dist.device)
        self.raw_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        return self.raw_model.state_dict()


def deepspeed_config(cfg: Config, world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON config, derived from the trainer config (never written by hand)."""
    zero: dict[str, Any] = {"stage": cfg.train.zero_stage}
    if cfg.train.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if cfg.train.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": cfg.optim.accum_steps,
        "train_batch_size": cfg.data.batch_size * cfg.optim.accum_steps * world_size,
        "zero_optimization": zero,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.optim.grad_clip:
        ds["gradient_clipping"] = cfg.optim.grad_clip
    if cfg.train.precision == "bf16":
        ds["bf16"] = {"enabled": True}
    elif cfg.train.precision == "fp16":
        ds["fp16"] = {"enabled": True, "initial_scale_power": 16}
    if cfg.train.offload_optimizer:
        # A torch optimizer with ZeRO-Offload: DeepSpeed would otherwise insist on compiling DeepSpeedCPUAdam.
        ds["zero_force_ds_cpu_optimizer"] = False
    return ds


class DeepSpeedBackend:
    name = "deepspeed"

    def __init__(self, model: torch.nn.Module, cfg: Config, dist: DistInfo):
        import deepspeed

        from clipzoo.core.train.dist import ensure_rendezvous_env

        self.cfg, self.dist = cfg, dist
        ensure_rendezvous_env(dist)  # DeepSpeed reads the rendezvous from os.environ only
        deepspeed.init_distributed(dist_backend="nccl" if dist.device.startswith("cuda") else "gloo")
        optimizer = make_optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
        self.ds_config = deepspeed_config(cfg, dist.world_size)
        engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=self.ds_config
        )
        self.module = engine
        self.engine = engine
        self.raw_model = engine.module

    def autocast(self):
        return contextlib.nullcontext()  # the engine casts weights and inputs itself (bf16/fp16 configs)

    def no_sync(self):
        return contextlib.nullcontext()  # ZeRO handles gradient reduction at the accumulation boundary

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Move to the device; float inputs take the engine's weight dtype (bf16/fp16 engines cast weights only)."""
        dtype = next(self.raw_model.parameters()).dtype
        out = {}
        for k, v in batch.items():
            if torch.is_tensor(v):
                v = v.to(self.dist.device, non_blocking=True)
                if v.is_floating_point():
                    v = v.to(dtype)
            out[k] = v
        return out

    def backward(self, loss: torch.Tensor, *, boundary: bool = True) -> None:
        # Sum over micro-steps (scale_wrt_gas=False); DeepSpeed counts micro-steps through engine.step(),
        # which only updates the weights at the accumulation boundary.
        self.engine.backward(loss, scale_wrt_gas=False)
        if not boundary:
            self.engine.step()

    def step(self) -> float | None:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else None

    @property
    def lr(self) -> float:
        return self.engine.get_lr()[0]

    def save(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder), tag="deepspeed", save_latest=False)

    def load(self, folder: Path) -> None:
        from clipzoo.core.train.checkpoint import BadCheckpointFile

        _use_safe_checkpoint_loading(self.engine)
        try:
            path, _ = self.engine.load_checkpoint(str(folder), tag="deepspeed")
        except BadCheckpointFile:
            raise
        except Exception as exc:  # DeepSpeed's own errors for a folder that is damaged in a way the index missed
            raise BadCheckpointFile(f"{folder / 'deepspeed'}: DeepSpeed cannot load it ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        if path is None:
            raise BadCheckpointFile(f"{folder / 'deepspeed'}: DeepSpeed found no checkpoint there")

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Full (unpartitioned) fp32-shaped weights on every rank, for export."""
        if self.cfg.train.zero_stage == 3:
            import deepspeed

            params = list(self.raw_model.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                return {k: v.detach().float().cpu().clone() for k, v in self.raw_model.state_dict().items()}
        return {k: v.detach().float().cpu().clone() for k, v in self.raw_model.state_dict().items()}


def _use_safe_checkpoint_loading(engine) -> None:
    """Make the engine read its checkpoint files with ``torch.load(weights_only=True)``.

    DeepSpeed 0.19's ``TorchCheckpointEngine.load`` turns weights-only loading off, so a crafted
    ``mp_rank_00_model_states.pt`` or optimizer file would run code on resume. Its files hold tensors and
    plain containers plus four small DeepSpeed data classes (loss scalers, the ZeRO stage enum, a
    fragment address), which are allow-listed for these loads only."""
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    from clipzoo.core.train.checkpoint import load_file

    current = getattr(engine, "checkpoint_engine", None)
    if getattr(current, "clipzoo_safe", False):
        return

    class SafeTorchCheckpointEngine(TorchCheckpointEngine):
        clipzoo_safe = True

        def load(self, path: str, map_location=None):
            with torch.serialization.safe_globals([LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]):
                return load_file(Path(path), map_location=map_location)

    if type(current) is TorchCheckpointEngine:
        engine.checkpoint_engine = SafeTorchCheckpointEngine(engine._config)
    else:
        # another engine (Nebula, decoupled) would load with its own unpickler: refuse rather than trust it
        raise RuntimeError(
            f"clipzoo resumes DeepSpeed runs with its torch checkpoint engine only, not {type(current).__name__}"
        )


def make_backend(model: torch.nn.Module, cfg: Config, dist: DistInfo):
    if cfg.train.backend == "torch":
        return TorchBackend(model, cfg, dist)
    if cfg.train.backend == "deepspeed":
        return DeepSpeedBackend(model, cfg, dist)
    raise ValueError(f"train.backend must be 'torch' or 'deepspeed', not {cfg.train.backend!r}")
