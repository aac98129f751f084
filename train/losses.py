"""Training losses on (N,) or (N,1) logits and {0,1} targets (1 = fake).

    bce       mean binary cross-entropy with logits
    cvar      CVaR_alpha of the per-sample BCE losses, with lambda minimised exactly per batch
    auc       pairwise AUC surrogate: mean over (fake, real) pairs of relu(eta - (s+ - s-)) ** p
    cvar-auc  gamma * cvar + (1 - gamma) * auc   (the robust-CLIP paper's objective)
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from fakedet.errors import DataError

LOSSES = ("bce", "cvar", "auc", "cvar-auc")


def _flat(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = logits.reshape(-1)
    if s.dtype not in (torch.float32, torch.float64):
        s = s.float()  # half-precision logits (AMP): the loss is computed in float32
    return s, targets.reshape(-1).to(s)


def bce_per_sample(logits, targets) -> torch.Tensor:
    s, y = _flat(logits, targets)
    return F.binary_cross_entropy_with_logits(s, y, reduction="none")


def bce_loss(logits, targets) -> torch.Tensor:
    return bce_per_sample(logits, targets).mean()


def cvar_lambda(losses: torch.Tensor, alpha: float) -> torch.Tensor:
    """The exact minimiser over lambda of  lambda + mean(relu(l - lambda)) / alpha.

    The objective is convex and piecewise linear with kinks at the l_i, so its minimum
    lies at one of them; all n candidates are evaluated in O(n log n) with suffix sums."""
    l = losses.detach().reshape(-1)
    n = l.numel()
    s, _ = torch.sort(l)  # ascending
    # sum_i relu(l_i - s_j) = sum_{i > j} s_i - (n - 1 - j) * s_j   (ties contribute 0 either way)
    suffix = torch.flip(torch.cumsum(torch.flip(s, [0]), 0), [0])  # suffix[j] = sum_{i >= j} s_i
    above = torch.cat([suffix[1:], suffix.new_zeros(1)])
    count = torch.arange(n - 1, -1, -1, device=l.device, dtype=s.dtype)
    objective = s + (above - count * s) / (n * alpha)
    return s[torch.argmin(objective)]


def cvar_of(losses: torch.Tensor, alpha: float) -> torch.Tensor:
    """CVaR_alpha(l) = min_lambda lambda + mean(relu(l - lambda)) / alpha. lambda* is a
    constant for the gradient (envelope theorem: d/dl of the min is d/dl at lambda*)."""
    if not 0.0 < alpha <= 1.0:
        raise DataError(f"CVaR alpha must lie in (0, 1], got {alpha}")
    lam = cvar_lambda(losses, alpha)
    return lam + F.relu(losses - lam).mean() / alpha


def cvar_loss(logits, targets, alpha: float = 0.8) -> torch.Tensor:
    return cvar_of(bce_per_sample(logits, targets), alpha)


def auc_loss(logits, targets, eta: float = 0.6, p: float = 2.0) -> torch.Tensor:
    """Mean over all (positive, negative) pairs of relu(-(s+ - s- - eta)) ** p. A batch
    without both classes has no pairs and contributes 0 (still attached to the graph)."""
    s, y = _flat(logits, targets)
    pos, neg = s[y > 0.5], s[y <= 0.5]
    if pos.numel() == 0 or neg.numel() == 0:
        return s.sum() * 0.0
    margin = pos[:, None] - neg[None, :] - eta
    return F.relu(-margin).pow(p).mean()


def cvar_auc_loss(logits, targets, gamma: float = 0.5, alpha: float = 0.8, eta: float = 0.6,
                  p: float = 2.0) -> torch.Tensor:
    return gamma * cvar_loss(logits, targets, alpha) + (1.0 - gamma) * auc_loss(logits, targets, eta, p)


def build_loss(name: str, alpha: float = 0.8, eta: float = 0.6, p: float = 2.0, gamma: float = 0.5):
    """A callable (logits, targets) -> scalar for one of LOSSES."""
    if name == "bce":
        return bce_loss
    if name == "cvar":
        return partial(cvar_loss, alpha=alpha)
    if name == "auc":
        return partial(auc_loss, eta=eta, p=p)
    if name == "cvar-auc":
        return partial(cvar_auc_loss, gamma=gamma, alpha=alpha, eta=eta, p=p)
    raise DataError(f"unknown loss '{name}' (known: {', '.join(LOSSES)})")
