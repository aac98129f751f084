"""Sharpness-Aware Minimization (Foret et al.) around any torch optimiser.

    opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=1e-3, weight_decay=0.01)
    loss_fn(model(x), y).backward();  opt.first_step(zero_grad=True)     # climb to w + e(w)
    with frozen_bn_stats(model):
        loss_fn(model(x), y).backward()                                 # gradient at w + e(w)
    opt.second_step(zero_grad=True)                                     # back to w, base step

e(w) = rho * g / ||g||_2 with the norm over all parameters. BatchNorm running
statistics are kept unchanged on the second pass (`frozen_bn_stats`), so the
perturbed forward does not count twice in them."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class SAM(torch.optim.Optimizer):
    def __init__(self, params, base_optimizer, rho: float = 0.05, **kwargs):
        if rho < 0:
            raise ValueError(f"rho must be >= 0, got {rho}")
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = [p.grad.norm(p=2) for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not norms:
            return torch.tensor(0.0)
        return torch.norm(torch.stack([n.to(norms[0].device) for n in norms]), p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = p.grad * scale.to(p)
                p.add_(e)
                self.state[p]["sam_e"] = e
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                e = self.state[p].pop("sam_e", None)
                if e is not None:
                    p.sub_(e)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad(set_to_none=True)

    def step(self, closure=None):
        """Full SAM step with a closure that zeroes nothing and returns loss after backward()."""
        if closure is None:
            raise RuntimeError("SAM.step needs a closure (or call first_step / second_step)")
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
        return loss

    # resume: only the base optimiser has state worth keeping (e(w) lives within one step)
    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


_BN = (nn.modules.batchnorm._BatchNorm,)


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module):
    """BatchNorm layers still normalise with batch statistics (train mode) but their
    running mean/var and batch counter are left exactly as they were."""
    saved = []
    for m in model.modules():
        if isinstance(m, _BN) and m.track_running_stats and m.running_mean is not None:
            saved.append((m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()))
    try:
        yield
    finally:
        with torch.no_grad():
            for m, mean, var, count in saved:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
