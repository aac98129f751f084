"""Each loss against an independent computation: brute-force lambda search, explicit pair loops."""

import itertools
import math

import pytest
import torch

from fakedet.train.losses import auc_loss, bce_loss, build_loss, cvar_auc_loss, cvar_lambda, cvar_loss


def _bce_ref(s, y):
    return [-(yi * math.log(1 / (1 + math.exp(-si))) + (1 - yi) * math.log(1 - 1 / (1 + math.exp(-si))))
            for si, yi in zip(s, y)]


def _cvar_brute(losses, alpha, steps=20001):
    lo, hi = min(losses) - 1.0, max(losses) + 1.0
    best = math.inf
    for i in range(steps):
        lam = lo + (hi - lo) * i / (steps - 1)
        best = min(best, lam + sum(max(l - lam, 0.0) for l in losses) / (len(losses) * alpha))
    return best


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(17, 1, generator=g, dtype=torch.float64) * 2
    y = (torch.rand(17, generator=g) > 0.4).double()
    return s, y


def test_bce_matches_formula(batch):
    s, y = batch
    ref = sum(_bce_ref(s.reshape(-1).tolist(), y.tolist())) / len(y)
    assert bce_loss(s, y).item() == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.8, 1.0])
def test_cvar_equals_brute_force_lambda_search(batch, alpha):
    s, y = batch
    per = _bce_ref(s.reshape(-1).tolist(), y.tolist())
    got = cvar_loss(s, y, alpha=alpha).item()
    # the exact minimum is never above a fine grid's minimum, and within the grid's resolution of it
    ref = _cvar_brute(per, alpha)
    assert got <= ref + 1e-6
    assert got == pytest.approx(ref, abs=2e-3)
    # and equals the minimum over every candidate lambda = l_j, computed by plain loops
    exact = min(lam + sum(max(l - lam, 0.0) for l in per) / (len(per) * alpha) for lam in per)
    assert got == pytest.approx(exact, rel=1e-7, abs=1e-9)


def test_cvar_lambda_is_a_quantile_and_alpha_one_is_the_mean(batch):
    s, y = batch
    l = torch.nn.functional.binary_cross_entropy_with_logits(s.reshape(-1), y, reduction="none")
    lam = cvar_lambda(l, 0.25).item()
    # at least 75% of the losses lie at or below the minimiser (it is the (1-alpha)-quantile)
    assert (l <= lam + 1e-12).double().mean().item() >= 0.75 - 1e-9
    assert cvar_loss(s, y, alpha=1.0).item() == pytest.approx(l.mean().item(), rel=1e-9)


def test_cvar_gradient_focuses_on_the_hardest_samples():
    s = torch.tensor([[3.0], [-3.0], [0.1], [2.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    cvar_loss(s, y, alpha=0.25).backward()
    g = s.grad.reshape(-1)
    assert g[1] < 0 and torch.count_nonzero(g).item() == 1  # only the worst quarter gets gradient


@pytest.mark.parametrize("eta,p", [(0.6, 2.0), (0.0, 1.0), (1.5, 3.0)])
def test_auc_loss_equals_explicit_pair_loops(batch, eta, p):
    s, y = batch
    sl, yl = s.reshape(-1).tolist(), y.tolist()
    pos = [a for a, b in zip(sl, yl) if b == 1]
    neg = [a for a, b in zip(sl, yl) if b == 0]
    terms = [max(-(a - b - eta), 0.0) ** p for a, b in itertools.product(pos, neg)]
    assert auc_loss(s, y, eta=eta, p=p).item() == pytest.approx(sum(terms) / len(terms), rel=1e-9)


def test_auc_loss_without_pairs_is_zero_and_differentiable():
    s = torch.randn(4, 1, requires_grad=True)
    loss = auc_loss(s, torch.ones(4))
    loss.backward()
    assert loss.item() == 0.0 and s.grad is not None


def test_combination_is_gamma_weighted(batch):
    s, y = batch
    for gamma in (0.0, 0.3, 1.0):
        want = gamma * cvar_loss(s, y, 0.8).item() + (1 - gamma) * auc_loss(s, y, 0.6, 2).item()
        assert cvar_auc_loss(s, y, gamma=gamma).item() == pytest.approx(want, rel=1e-12)
        assert build_loss("cvar-auc", gamma=gamma)(s, y).item() == pytest.approx(want, rel=1e-12)
