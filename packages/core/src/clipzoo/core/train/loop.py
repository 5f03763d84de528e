"""The contrastive training loop: one path, read top to bottom.

Launch:
    clipzoo train CONFIG.yaml [--section.key=value ...]                         # one process
    torchrun --nproc-per-node 2 -m clipzoo.core.train CONFIG.yaml ...          # DDP or DeepSpeed
    deepspeed --num_gpus 2 --module clipzoo.core.train CONFIG.yaml --train.backend=deepspeed

Contrastive accumulation (``optim.accum_steps = k``): the features of all k micro-batches are first
computed without gradients and cached; then each micro-batch is recomputed with gradients and its
loss taken against the cached features of all the others, so every sample sees the negatives of the
whole k-micro-batch (and, with gathering, all-rank) batch. The k backward passes sum into the
gradient of the full-batch loss (GradCache; open_clip's ``--accum-freq``, except that the temperature
is counted once, so accumulation gives exactly the large-batch gradient). It works the same under
DDP and DeepSpeed ZeRO, whose engine counts the k micro-steps itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipzoo.core.train import dist as distu
from clipzoo.core.train.config import Config, ConfigError

log = logging.getLogger("clipzoo.train")


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path | None
    steps: int
    samples_seen: int
    resumed_from: int | None
    samples_per_s: float
    history: list[dict[str, float]] = field(default_factory=list)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _cat_features(cached: list[dict[str, Any]], live: dict[str, Any], j: int, key: str) -> dict[str, torch.Tensor]:
    """Micro-batch j's live tensors in place of its cached ones, concatenated over micro-batches."""
    return {
        m: torch.cat([live[key][m] if i == j else c[key][m] for i, c in enumerate(cached)])
        for m in live[key]
    }


def _data_summary(urls_spec) -> list[dict[str, Any]]:
    """What the model was trained on, from each shard folder's manifest (for the model card)."""
    from clipzoo.core.data.writer import MANIFEST_NAME, Manifest

    specs = urls_spec if isinstance(urls_spec, (list, tuple)) else [urls_spec]
    out = []
    for spec in specs:
        folder = Path(str(spec))
        if folder.is_dir() and (folder / MANIFEST_NAME).is_file():
            m = Manifest.load(folder)
            out.append({
                "name": folder.name,
                "path": str(folder),
                "num_samples": m.num_samples,
                "shards": [{"name": s.name, "samples": s.samples, "sha256": s.sha256} for s in m.shards],
                "source": m.source,
                "ingest": {k: v for k, v in m.ingest.items() if k != "skipped"},
            })
        else:
            out.append({"name": str(spec), "path": str(spec)})
    return out


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and prefix.count(".") < 1:  # sections only; inline dicts compare whole
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_same_run(out: Path, cfg: Config) -> None:
    """An existing run folder is resumed only with the config it was started with (its config.json is
    never overwritten): a different one would silently change the run the checkpoints belong to."""
    path = out / "config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} exists but cannot be read ({exc}); choose another run.output_dir") from None
    now = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists, like the saved file
    a, b = _flatten(saved if isinstance(saved, dict) else {}), _flatten(now)
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diff:
        shown = ", ".join(f"{k}: {_short(a.get(k), 40)} in the run, {_short(b.get(k), 40)} now" for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise ConfigError(f"{out} holds a run with another config ({shown}{more}); resume it with the same "
                          f"config, or give a new run.output_dir")


def train(cfg: Config, *, stop_after_steps: int | None = None) -> TrainResult:
    """Train (or resume) the run described by ``cfg``. ``stop_after_steps`` ends this process early
    (as if killed after a checkpoint) without changing the schedule; tests use it.

    ``train.threads`` applies for the duration of the call; the process's thread count is restored after."""
    previous_threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        return _train(cfg, stop_after_steps)
    finally:
        torch.set_num_threads(previous_threads)


def _model_and_loss(cfg: Config, info: distu.DistInfo):
    """The model (identical initial weights on every rank) and its contrastive loss."""
    from clipzoo.core.losses import create_loss
    from clipzoo.core.models import create_model

    torch.manual_seed(cfg.run.seed)
    try:
        model = create_model(cfg.model.config, pretrained=cfg.model.pretrained)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise ConfigError(f"model.config={_short(cfg.model.config)}: {exc}") from None
    _data_preprocess(cfg, model)
    if cfg.model.grad_checkpointing:
        model.set_grad_checkpointing(True)
    loss_cfg = {"type": cfg.loss.type, **cfg.loss.options} if cfg.loss.type else dict(model.config.get("loss") or {})
    try:
        loss_fn = create_loss(loss_cfg, rank=info.rank, world_size=info.world_size)
    except ValueError as exc:
        raise ConfigError(f"loss: {exc}") from None
    return model, loss_fn


def _data_preprocess(cfg: Config, model) -> None:
    """Put the training data's preprocessing on ``model.preprocess``, so the saved package carries it.

    A source may record what it applied as a ``preprocess`` note in its manifest (``ingest.notes.preprocess``:
    ``{modality: {setting: value}}``, e.g. astro's light-curve length, spectral grid and metadata feature
    statistics); every training folder's note (local or a folder URL) is merged into the model's preprocess for the modalities the
    model has. A value that contradicts the model config (or another training folder) is refused: the data would
    not be what the model expects, and benchmarks on new raw data would preprocess it differently.
    """
    from clipzoo.core.data.loader import storage_from_config
    from clipzoo.core.data.shardset import ShardSetError, names_a_folder, read_manifest

    origin: dict[str, str] = {}  # dotted setting -> the folder that set it (absent: the model config)

    def merge(into: dict[str, Any], note: dict[str, Any], path: str, folder: str) -> None:
        for key, value in note.items():
            dotted = f"{path}.{key}"
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value, dotted, folder)
            elif key in into and into[key] != value:
                raise ConfigError(f"data.train {folder}: its manifest's preprocess {dotted}={_short(value, 60)} "
                                  f"contradicts {_short(into[key], 60)} of {origin.get(dotted, 'the model config')}; "
                                  "ingest the data with the model's settings (e.g. --model) or change the config")
            else:
                into[key] = value
                origin.setdefault(dotted, str(folder))

    specs = cfg.data.train if isinstance(cfg.data.train, (list, tuple)) else [cfg.data.train]
    storage = storage_from_config(cfg.data)
    for spec in specs:
        folder = str(spec)
        if not names_a_folder(folder):
            continue  # a brace pattern or a list of .tar files: no manifest says what was applied
        try:
            manifest = read_manifest(folder, storage)  # a local folder or a folder URL (s3://, gs://, https://)
        except ShardSetError as exc:
            raise ConfigError(f"data.train={folder}: {exc}") from None
        if manifest is None:
            continue  # a foreign shard set (allow_unmanifested): nothing recorded
        note = ((manifest.get("ingest") or {}).get("notes") or {}).get("preprocess")
        if note is None:
            continue
        if not isinstance(note, dict):  # the units' notes disagreed and were kept as a list
            raise ConfigError(f"data.train {folder}: its work units recorded different preprocessing ({_short(note)}); "
                              "re-ingest it in one run with one set of settings")
        for modality, settings in note.items():
            if modality in model.preprocess and isinstance(settings, dict):
                merge(model.preprocess[modality], settings, modality, folder)


def _make_loader(cfg: Config, model, info: distu.DistInfo):
    """This rank's resumable loader over the shard set, with the model's preprocessing (+ optional crops)."""
    from clipzoo.core.data.loader import (ResumableLoader, ShardStream, StreamConfig, resolve_shards,
                                          storage_from_config)
    from clipzoo.core.data.transforms import SampleTransform

    storage = storage_from_config(cfg.data)  # remote access and cache (clipzoo.core.data.shardset)
    try:
        urls = resolve_shards(cfg.data.train, allow_unmanifested=cfg.data.allow_unmanifested, storage=storage)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"data.train={_short(cfg.data.train)}: {exc}") from None
    train_preprocess = {m: dict(spec) for m, spec in model.preprocess.items()}
    if cfg.data.augment:  # random resized crops for image towers (the model's own preprocess stays as it is)
        for spec in train_preprocess.values():
            if spec.get("kind") == "image" and not spec.get("train_crop_scale"):
                spec["train_crop_scale"] = [0.8, 1.0]
    stream_options: dict[str, Any] = {"storage": storage}
    if "on_bad_shard" in {f.name for f in dataclasses.fields(StreamConfig)}:  # the loader's option, when it has it
        stream_options["on_bad_shard"] = cfg.data.on_bad_shard
    elif cfg.data.on_bad_shard != "stop":
        raise ConfigError(f"data.on_bad_shard={cfg.data.on_bad_shard!r}: this loader can only stop at a bad shard")
    stream = ShardStream(
        urls,
        SampleTransform(train_preprocess, train=True, seed=cfg.run.seed),
        StreamConfig(
            batch_size=cfg.data.batch_size,
            seed=cfg.run.seed,
            shuffle_buffer=cfg.data.shuffle_buffer,
            split=cfg.data.split,
            rank=info.rank,
            world_size=info.world_size,
            **stream_options,
        ),
    )
    return ResumableLoader(stream, num_workers=cfg.data.workers, pin_memory=info.device.startswith("cuda"))


def _start_mlflow(cfg: Config, info: distu.DistInfo, run_id: str | None, n_params: int):
    """Rank 0's MLflow run (the resumed one when ``run_id`` is known): (the mlflow module or None, run id)."""
    if not (info.is_main and cfg.run.mlflow):
        return None, run_id
    import mlflow

    from clipzoo.core.tracking import setup_mlflow

    setup_mlflow(cfg.run.tracking_uri, cfg.run.experiment)
    mlflow.start_run(run_id=run_id, run_name=None if run_id else cfg.run.name)
    if run_id is None:
        mlflow.log_params({"backend": cfg.train.backend, "world_size": info.world_size, "params": n_params,
                           "model": str(cfg.model.config)[:250], "batch_size": cfg.data.batch_size,
                           "accum_steps": cfg.optim.accum_steps, "lr": cfg.optim.lr,
                           "precision": cfg.train.precision, "zero_stage": cfg.train.zero_stage})
    return mlflow, mlflow.active_run().info.run_id


def _forward_backward(backend, loss_fn, micro: list[dict[str, Any]]) -> float:
    """Gradients of the full-batch contrastive loss over ``micro`` (one micro-batch, or k with GradCache);
    returns the loss."""
    module, k = backend.module, len(micro)
    if k == 1:
        with backend.autocast():
            outputs = module(micro[0])
            loss = loss_fn(outputs["features"], outputs["logit_scale"], outputs["logit_bias"], outputs["masks"])
        backend.backward(loss, boundary=True)
        return loss.detach().float().item()
    # a. features of every micro-batch, no graph; remember RNG so the recompute matches
    cached, rng_states = [], []
    with torch.no_grad(), backend.autocast():
        for b in micro:
            rng_states.append(torch.get_rng_state())
            o = module(b)
            cached.append({"features": {m: f.detach() for m, f in o["features"].items()}, "masks": o["masks"]})
    # b. recompute each micro-batch with gradients against all cached negatives
    loss_value = 0.0
    for j, b in enumerate(micro):
        torch.set_rng_state(rng_states[j])
        sync = contextlib.nullcontext() if j == k - 1 else backend.no_sync()
        with sync, backend.autocast():
            o = module(b)
            feats = _cat_features(cached, o, j, "features")
            masks = _cat_features(cached, o, j, "masks")
            # the temperature (and bias) gets its gradient from one micro-step only, so the
            # summed gradient equals the full-batch one for every parameter
            scale, bias = o["logit_scale"], o["logit_bias"]
            if j > 0:
                scale = scale.detach()
                bias = bias.detach() if bias is not None else None
            loss = loss_fn(feats, scale, bias, masks)
            backend.backward(loss, boundary=j == k - 1)
        loss_value = loss.detach().float().item()  # every micro-loss is the full-batch loss
    return loss_value


def _export(cfg: Config, state: dict[str, torch.Tensor], out: Path, summary: dict[str, Any]) -> Path:
    """The model package (``out/model``: config, weights, preprocess) and its ``train_summary.json``."""
    from clipzoo.core.models import create_model, save_pretrained
    from clipzoo.core.models.package import SUMMARY_NAME

    export = create_model(cfg.model.config)
    export.load_state_dict({k: v.to(export.state_dict()[k].dtype) for k, v in state.items()})
    _data_preprocess(cfg, export)
    model_dir = save_pretrained(export, out / "model")
    summary = {
        "name": cfg.run.name,
        "architecture": cfg.model.config if isinstance(cfg.model.config, str) else "custom",
        **summary,
        "backend": cfg.train.backend,
        "training_config": cfg.to_dict(),
        "data": _data_summary(cfg.data.train),
    }
    (model_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    log.info("model package written to %s", model_dir)
    return model_dir


def _train(cfg: Config, stop_after_steps: int | None) -> TrainResult:
    from tqdm import tqdm

    from clipzoo.core.data.writer import atomic_write_text
    from clipzoo.core.train.backends import make_backend
    from clipzoo.core.train.checkpoint import CheckpointError, Checkpointer

    # -- 1. processes and seeds; nothing is written until every check below has passed ------------
    info = distu.init(cfg.train.device, cfg.train.dist_backend)
    _seed_everything(cfg.run.seed + info.rank)
    out = Path(cfg.run.output_dir)
    if not cfg.data.train:
        raise ConfigError("data.train is empty: name a shard folder, brace pattern or URL")
    _check_same_run(out, cfg)

    # -- 2. model and loss -----------------------------------------------------------------------
    model, loss_fn = _model_and_loss(cfg, info)
    n_params = sum(p.numel() for p in model.parameters())
    _seed_everything(cfg.run.seed + info.rank)

    # -- 3. data ---------------------------------------------------------------------------------
    loader = _make_loader(cfg, model, info)

    # -- 4. backend (torch DDP or DeepSpeed ZeRO) --------------------------------------------------
    backend = make_backend(model, cfg, info)

    # -- 5. the run folder, then resume from the newest whole checkpoint -----------------------------
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "config.json").is_file():
            atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2))
    distu.barrier()
    ckpt = Checkpointer(out / "checkpoints", cfg.train.keep_last, info)
    step, samples_seen, elapsed, resumed_from, mlflow_run_id = 0, 0, 0.0, None, None
    resumed = ckpt.resume(backend)
    if resumed is not None:
        latest, rank_state, meta = resumed
        try:
            loader.load_state_dict(rank_state["loader"])
        except ValueError as exc:
            raise CheckpointError(f"{latest}: {exc}") from None
        step, samples_seen, elapsed = meta["step"], meta["samples_seen"], meta["elapsed_s"]
        resumed_from, mlflow_run_id = step, meta.get("mlflow_run_id")
        if info.is_main:
            log.info("resumed from %s (step %d, epoch %d)", latest, step, loader.state.epoch)

    # -- 6. metrics: MLflow (rank 0), metrics.jsonl and a progress bar -------------------------------
    mlflow, mlflow_run_id = _start_mlflow(cfg, info, mlflow_run_id, n_params)
    bar = tqdm(total=cfg.train.max_steps, initial=step, desc=cfg.run.name, unit="step",
               disable=not (info.is_main and cfg.run.progress))
    history: list[dict[str, float]] = []
    metrics_file = out / "metrics.jsonl"
    last_saved = resumed_from  # the step of the newest checkpoint known to be whole

    def save_checkpoint() -> None:
        nonlocal last_saved
        last_saved = step
        ckpt.save(step, backend, {"loader": loader.state_dict()}, {
            "samples_seen": samples_seen, "elapsed_s": elapsed + (time.time() - t_start),
            "world_size": info.world_size, "mlflow_run_id": mlflow_run_id, "backend": cfg.train.backend})

    # -- 7. the loop -----------------------------------------------------------------------------
    k = cfg.optim.accum_steps
    global_batch = cfg.data.batch_size * k * info.world_size
    batches = iter(loader)
    t_start = time.time()
    t_window, steps_window, stopped_early = time.time(), 0, False
    backend.raw_model.train()
    while step < cfg.train.max_steps:
        if cfg.train.max_time_s is not None and elapsed + (time.time() - t_start) >= cfg.train.max_time_s:
            break
        loss_value = _forward_backward(backend, loss_fn, [backend.to_device(next(batches)) for _ in range(k)])
        grad_norm = backend.step()
        step += 1
        samples_seen += global_batch
        steps_window += 1
        bar.update(1)

        if step % cfg.run.log_every == 0 or step == cfg.train.max_steps:
            now = time.time()
            loss_mean = distu.all_reduce_mean(loss_value)
            sps = steps_window * global_batch / max(now - t_window, 1e-9)
            t_window, steps_window = now, 0
            raw = backend.raw_model
            scale = float(raw.logit_scale.exp().item()) if hasattr(raw, "logit_scale") else float("nan")
            row = {"step": step, "loss": loss_mean, "lr": backend.lr, "temperature": 1.0 / scale,
                   "logit_scale": scale, "samples_per_s": sps, "samples_seen": samples_seen}
            if grad_norm is not None:
                row["grad_norm"] = grad_norm
            history.append(row)
            if info.is_main:
                bar.set_postfix(loss=f"{loss_mean:.3f}", lr=f"{backend.lr:.2e}", sps=f"{sps:.0f}")
                with open(metrics_file, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                if mlflow is not None:
                    mlflow.log_metrics({k_: v for k_, v in row.items() if k_ != "step"}, step=step)
        if step % cfg.train.checkpoint_every == 0:
            save_checkpoint()
        if stop_after_steps is not None and step - (resumed_from or 0) >= stop_after_steps:
            stopped_early = True
            break
    bar.close()
    elapsed += time.time() - t_start
    trained_s = time.time() - t_start

    # -- 8. final checkpoint and the exported model package --------------------------------------
    if last_saved != step:
        t_start = time.time()  # elapsed already counts this session; save_checkpoint adds the remainder
        save_checkpoint()
    model_dir = None
    state = backend.full_state_dict()  # every rank takes part (ZeRO-3 gathers)
    if info.is_main and not stopped_early:
        model_dir = _export(cfg, state, out, {
            "parameters": n_params, "steps": step, "samples_seen": samples_seen, "world_size": info.world_size,
            "elapsed_s": round(elapsed, 1), "final_metrics": history[-1] if history else {},
            "mlflow_run_id": mlflow_run_id})
    if mlflow is not None:
        mlflow.end_run()
    distu.barrier()
    done = max(1, step - (resumed_from or 0))
    return TrainResult(out, model_dir, step, samples_seen, resumed_from,
                       samples_per_s=done * global_batch / max(trained_s, 1e-9), history=history)
