"""clipzoo.core.losses against naive reference loops, open_clip's losses, and a 2-process gloo run."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clipzoo.core.losses import ClipLoss, PairwiseLoss, SigLipLoss, create_loss


def _features(n=6, d=8, seed=0, names=("image", "text")):
    g = torch.Generator().manual_seed(seed)
    return {m: F.normalize(torch.randn(n, d, generator=g), dim=-1).requires_grad_() for m in names}


def naive_clip(a, b, scale):
    """Mean over rows of -log softmax at the diagonal, both directions, by explicit loops."""
    a, b, n = a.detach(), b.detach(), a.shape[0]
    total = 0.0
    for i in range(n):
        row_ab = [scale * float(a[i] @ b[j]) for j in range(n)]
        row_ba = [scale * float(b[i] @ a[j]) for j in range(n)]
        total += -(row_ab[i] - math.log(sum(math.exp(x) for x in row_ab)))
        total += -(row_ba[i] - math.log(sum(math.exp(x) for x in row_ba)))
    return total / (2 * n)


def naive_siglip(a, b, scale, bias):
    a, b, n = a.detach(), b.detach(), a.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            total += -math.log(1 / (1 + math.exp(-z * (scale * float(a[i] @ b[j]) + bias))))
    return total / n


def test_clip_loss_matches_naive_loop_and_open_clip():
    from open_clip.loss import ClipLoss as OpenClipLoss

    f = _features()
    scale = torch.tensor(10.0)
    ours = ClipLoss()(f, scale)
    assert ours.item() == pytest.approx(naive_clip(f["image"], f["text"], 10.0), rel=1e-5)
    assert ours.item() == pytest.approx(OpenClipLoss()(f["image"], f["text"], scale).item(), rel=1e-6)


def test_clip_loss_leaves_out_absent_rows():
    f = _features(n=7)
    present = torch.tensor([True, True, False, True, True, False, True])
    loss = ClipLoss()(f, torch.tensor(5.0), masks={"image": present, "text": torch.ones(7, dtype=torch.bool)})
    keep = present.nonzero().squeeze(1)
    assert loss.item() == pytest.approx(naive_clip(f["image"][keep], f["text"][keep], 5.0), rel=1e-5)
    loss.backward()
    assert f["image"].grad[~present].abs().max() == 0  # absent rows get no gradient


def test_siglip_matches_naive_loop_and_open_clip():
    from open_clip.loss import SigLipLoss as OpenSigLipLoss

    f = _features()
    scale, bias = torch.tensor(10.0), torch.tensor(-5.0)
    ours = SigLipLoss()(f, scale, bias)
    assert ours.item() == pytest.approx(naive_siglip(f["image"], f["text"], 10.0, -5.0), rel=1e-5)
    assert ours.item() == pytest.approx(OpenSigLipLoss()(f["image"], f["text"], scale, bias).item(), rel=1e-6)
    with pytest.raises(ValueError, match="init_logit_bias"):
        SigLipLoss()(f, scale)


def test_siglip_leaves_out_samples_with_an_absent_side():
    f = _features(n=5)
    present = torch.tensor([True, False, True, True, True])
    loss = SigLipLoss()(f, torch.tensor(3.0), torch.tensor(-1.0), masks={"text": present})
    keep = present.nonzero().squeeze(1)
    # rows and columns of the absent sample drop out; the sum is still divided by the batch size (5)
    expected = naive_siglip(f["image"][keep], f["text"][keep], 3.0, -1.0) * len(keep) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_pairwise_is_the_sum_of_masked_pair_losses():
    names = ("lightcurve", "spectrum", "metadata")
    f = _features(n=6, names=names)
    masks = {
        "lightcurve": torch.ones(6, dtype=torch.bool),
        "spectrum": torch.tensor([True, False, True, True, False, True]),
        "metadata": torch.tensor([True, True, True, False, True, True]),
    }
    loss = PairwiseLoss()(f, torch.tensor(7.0), masks=masks)
    expected = 0.0
    for a, b in itertools.combinations(names, 2):
        keep = (masks[a] & masks[b]).nonzero().squeeze(1)
        expected += naive_clip(f[a][keep], f[b][keep], 7.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    weighted = PairwiseLoss(pairs=[("lightcurve", "spectrum")], weights=[0.5])(f, torch.tensor(7.0), masks=masks)
    keep = masks["spectrum"].nonzero().squeeze(1)
    assert weighted.item() == pytest.approx(0.5 * naive_clip(f["lightcurve"][keep], f["spectrum"][keep], 7.0), rel=1e-5)


def test_a_pair_with_no_common_rows_contributes_zero_and_backpropagates():
    f = _features(n=3, names=("a", "b"))
    masks = {"a": torch.tensor([True, False, False]), "b": torch.tensor([False, True, True])}
    loss = PairwiseLoss()(f, torch.tensor(5.0), masks=masks)
    assert loss.item() == 0.0
    loss.backward()
    assert f["a"].grad is not None and f["a"].grad.abs().max() == 0


def test_create_loss_chooses_by_type_only():
    assert isinstance(create_loss({"type": "clip"}), ClipLoss)
    assert isinstance(create_loss(None), ClipLoss)
    assert isinstance(create_loss({"type": "siglip"}, rank=1, world_size=4), SigLipLoss)
    pairwise = create_loss({"type": "pairwise", "local_loss": True}, rank=1, world_size=2)
    assert isinstance(pairwise, PairwiseLoss) and pairwise.clip.rank == 1 and pairwise.clip.local_loss
    with pytest.raises(ValueError, match="unknown loss type 'coca'.*clip, siglip, pairwise"):
        create_loss({"type": "coca"})
    with pytest.raises(ValueError, match="bad options for loss 'clip'"):
        create_loss({"type": "clip", "temperature": 0.1})
    with pytest.raises(ValueError, match="pairwise"):
        ClipLoss()(_features(names=("a", "b", "c")), torch.tensor(1.0))


# -- two processes over gloo --------------------------------------------------------------------
WORLD = 2
PER_RANK = 4


def _setup():
    """Shared toy 'towers' and a global batch; each rank encodes its half."""
    torch.manual_seed(0)
    towers = {m: torch.nn.Linear(5, 6) for m in ("a", "b", "c")}
    inputs = {m: torch.randn(WORLD * PER_RANK, 5) for m in towers}
    masks = {
        "a": torch.ones(WORLD * PER_RANK, dtype=torch.bool),
        "b": torch.tensor([True, True, False, True, True, False, True, True]),
        "c": torch.tensor([True, True, True, True, False, True, True, False]),
    }
    return towers, inputs, masks


def _losses(rank, world):
    return {
        "clip": (ClipLoss(rank=rank, world_size=world, modalities=("a", "b")), False),
        "clip_local": (ClipLoss(local_loss=True, rank=rank, world_size=world, modalities=("a", "b")), False),
        "clip_masked": (ClipLoss(rank=rank, world_size=world, modalities=("b", "c")), False),
        "siglip": (SigLipLoss(rank=rank, world_size=world, modalities=("a", "c")), True),
        "pairwise": (PairwiseLoss(rank=rank, world_size=world), False),
    }


def _run(towers, inputs, masks, loss_fn, bias, rows):
    for t in towers.values():
        t.zero_grad()
    features = {m: F.normalize(t(inputs[m][rows]), dim=-1) for m, t in towers.items()}
    scale = torch.tensor(8.0)
    loss = loss_fn(features, scale, torch.tensor(-2.0) if bias else None, {m: v[rows] for m, v in masks.items()})
    loss.backward()
    params = [p for t in towers.values() for p in t.parameters()]
    return loss.detach(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def _worker(rank, init_file, results):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        towers, inputs, masks = _setup()
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        for name, (loss_fn, bias) in _losses(rank, WORLD).items():
            loss, grads = _run(towers, inputs, masks, loss_fn, bias, rows)
            for g in grads:  # what DDP does with parameter gradients
                dist.all_reduce(g)
                g /= WORLD
            dist.all_reduce(loss)
            results.put((rank, name, (loss / WORLD).item(), [g.tolist() for g in grads]))
    finally:
        dist.destroy_process_group()
    results.put((rank, "threads after destroy", _gloo_threads(), []))


def _gloo_threads() -> list[str]:
    """Names of this process's gloo threads (Linux names each thread in /proc/self/task/*/comm).

    Threads that outlive ``destroy_process_group`` free tensors while the interpreter shuts down, and the
    process then dies of SIGABRT after its work is done (a failed run to its launcher)."""
    names = []
    for task in Path("/proc/self/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:  # a thread that ended while we listed
            pass
    return sorted(n for n in names if "gloo" in n)


@pytest.mark.distributed
def test_gathered_losses_over_two_gloo_processes_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    mp.start_processes(_worker, args=(str(tmp_path / "init"), results), nprocs=WORLD, start_method="spawn", join=True)
    got = {}
    for _ in range(WORLD * (len(_losses(0, 1)) + 1)):
        rank, name, loss, grads = results.get(timeout=30)
        got[(rank, name)] = (loss, grads)
    # a gathered loss must not keep the group alive after destroy_process_group (see _gloo_threads)
    for rank in range(WORLD):
        assert got[(rank, "threads after destroy")][0] == [], rank
    towers, inputs, masks = _setup()
    for name, (loss_fn, bias) in _losses(0, 1).items():
        loss, grads = _run(towers, inputs, masks, loss_fn, bias, slice(None))
        for rank in range(WORLD):
            dist_loss, dist_grads = got[(rank, name)]
            # averaged over ranks, the loss (and the DDP-averaged gradient) is that of the whole batch
            assert dist_loss == pytest.approx(loss.item(), rel=1e-5), name
            for g, dg in zip(grads, dist_grads, strict=True):
                assert torch.allclose(g, torch.tensor(dg), atol=1e-6), name
