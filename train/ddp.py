"""What the trainer needs to run under `torchrun` (DDP) and give the single-process result.

One global batch per step, whatever the number of processes: rank r takes items r, r+W,
r+2W, ... of it, and the loss is computed on the whole batch gathered back in its
single-process order, so batch-level losses (CVaR, the pairwise AUC loss) and the mean of
an uneven last batch are the same numbers as in one process. Torch's random draws
(Dropout) are reseeded per (seed, epoch, rank): a resumed run draws what an uninterrupted
one drew, on every rank, without saving each rank's generator."""

from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as dist

from fakedet.errors import DataError


def rank_and_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init(world: int, device: torch.device) -> None:
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"  # --device cpu on a GPU machine: gloo
        # long timeout: the other ranks wait at a barrier while rank 0 extracts cached features
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=12))


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, np.uint64)[0] >> 1)


def step_batches(order: list[int], items_per_step: int, rank: int, world: int, least: int) -> list[list[int]]:
    """This rank's item indices for each step. A step takes `items_per_step` items of
    `order` (the last may be short; one shorter than `least` is dropped, in every mode);
    rank r gets the step's items r, r+W, ..."""
    steps = [order[i : i + items_per_step] for i in range(0, len(order), items_per_step)]
    if steps and len(steps[-1]) < max(least, world):
        steps.pop()
    return [s[rank::world] for s in steps]


def check_batch(batch: int, per_item: int, world: int) -> None:
    if world > 1 and (batch // per_item) % world:
        unit = "pairs" if per_item == 2 else "images"
        raise DataError(f"--batch {batch} is the global batch ({batch // per_item} {unit}); under torchrun it is "
                        f"split over {world} processes, so the number of {unit} must be a multiple of {world}")


class _GatherInOrder(torch.autograd.Function):
    """all_gather of equal-length (padded) 1-D tensors; backward sums every rank's gradient
    for this rank's slice (each rank computes the loss of the gathered batch)."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def gather_batch(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's (logits, labels) as one batch in the single-process order (rank r held
    items r, r+W, ...). Gradients flow back to each rank's own logits; DDP's mean over
    ranks then gives the gradient of the loss on the whole batch."""
    world = dist.get_world_size()
    s, y = logits.reshape(-1), labels.reshape(-1).to(logits.dtype)
    n = torch.tensor([s.numel()], dtype=torch.long, device=s.device)
    counts = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(counts, n)
    counts = [int(c) for c in counts]
    m = max(counts)
    pad = lambda t: torch.cat([t, t.new_zeros(m - t.numel())])  # noqa: E731
    s_all = _GatherInOrder.apply(pad(s))
    y_parts = [torch.empty(m, dtype=y.dtype, device=y.device) for _ in range(world)]
    dist.all_gather(y_parts, pad(y).detach())
    # interleave back: position j of rank r is item r + W*j of the step
    index = sorted(((r + world * j, r * m + j) for r in range(world) for j in range(counts[r])))
    take = torch.tensor([flat for _, flat in index], device=s.device)
    return s_all.reshape(-1)[take], torch.stack(y_parts).reshape(-1)[take]


def agree_on_step(groups: int) -> int:
    """How many same-shape groups every rank trains on this step: 0 (skip the step) when a
    rank has none (its images were all unreadable); an error when the counts differ."""
    t = torch.tensor([groups, -groups], dtype=torch.long)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    low, high = int(t[0]), -int(t[1])
    if low == 0:
        return 0
    if low != high:
        raise DataError("under torchrun every step needs one image size on every process: keep the augmentation's "
                        "crop (the default) or use an architecture with a fixed input size")
    return low


def sum_over_ranks(n: int) -> int:
    t = torch.tensor([n], dtype=torch.long)
    dist.all_reduce(t)
    return int(t)


def from_rank0(obj):
    """rank 0's `obj` on every rank (the epoch's metrics: plateau and early-stop decisions
    must be the same everywhere, or one rank stops while the others wait)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def has_batchnorm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if os.environ.get("LOCAL_RANK") is not None and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device '{name}' asked for, but no CUDA GPU is available")
    return dev
