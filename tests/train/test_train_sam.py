"""SAM against a hand-written two-step update; BatchNorm statistics untouched on the second pass."""

import torch
from torch import nn

from fakedet.train.sam import SAM, frozen_bn_stats


def _loss(w, x, y):
    return ((x @ w - y) ** 2).mean() + (w ** 4).sum()


def test_sam_sgd_matches_hand_written_update():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    w0 = torch.randn(3, dtype=torch.float64)
    rho, lr = 0.1, 0.05
    # by hand: g = grad(w0); e = rho g/|g|; w1 = w0 - lr * grad(w0 + e)
    w = w0.clone().requires_grad_(True)
    (g0,) = torch.autograd.grad(_loss(w, x, y), w)
    e = rho * g0 / g0.norm()
    wp = (w0 + e).requires_grad_(True)
    (g1,) = torch.autograd.grad(_loss(wp, x, y), wp)
    want = w0 - lr * g1

    p = nn.Parameter(w0.clone())
    opt = SAM([p], torch.optim.SGD, rho=rho, lr=lr)
    _loss(p, x, y).backward()
    opt.first_step(zero_grad=True)
    assert torch.allclose(p.detach(), w0 + e)
    _loss(p, x, y).backward()
    opt.second_step(zero_grad=True)
    assert torch.allclose(p.detach(), want, atol=1e-12)
    # and the plain gradient step lands elsewhere: SAM really used the perturbed gradient
    assert not torch.allclose(want, w0 - lr * g0)


def test_sam_wraps_adamw_and_closure_step_agrees():
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    w0 = torch.randn(3, dtype=torch.float64)
    a, b = nn.Parameter(w0.clone()), nn.Parameter(w0.clone())
    opt_a = SAM([a], torch.optim.AdamW, rho=0.05, lr=1e-2, weight_decay=0.01)
    opt_b = SAM([b], torch.optim.AdamW, rho=0.05, lr=1e-2, weight_decay=0.01)
    ref = torch.optim.AdamW([nn.Parameter(w0.clone())], lr=1e-2, weight_decay=0.01)
    for _ in range(3):
        _loss(a, x, y).backward()
        opt_a.first_step(True)
        _loss(a, x, y).backward()
        opt_a.second_step(True)

        def closure():
            loss = _loss(b, x, y)
            loss.backward()
            return loss

        opt_b.step(closure)
        opt_b.zero_grad()
    assert torch.equal(a.detach(), b.detach())
    assert opt_a.state_dict()["state"][0]["step"].item() == 3
    assert ref.param_groups[0]["weight_decay"] == opt_a.param_groups[0]["weight_decay"]


def test_batchnorm_stats_frozen_on_second_pass():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    opt = SAM(net.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    bn = net[1]
    nn.functional.mse_loss(net(x), y).backward()
    after_first = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    opt.first_step(zero_grad=True)
    with frozen_bn_stats(net):
        out = net(x)  # still normalises with batch statistics...
        nn.functional.mse_loss(out, y).backward()
    opt.second_step(zero_grad=True)
    assert torch.equal(bn.running_mean, after_first[0])  # ...but the running ones did not move
    assert torch.equal(bn.running_var, after_first[1])
    assert torch.equal(bn.num_batches_tracked, after_first[2])
    # without the guard they would have moved
    net(x)
    assert not torch.equal(bn.running_mean, after_first[0])
