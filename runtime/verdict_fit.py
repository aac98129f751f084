"""Fitting a probability calibration and measuring operating points on held-out labelled
logits (numpy only: the eval command and the demo call it)."""

from __future__ import annotations

import hashlib

import numpy as np

from fakedet.verdict_fields import OperatingPoint, ProbabilityCalibration

from . import metrics
from .scoring import sigmoid
from .verdict import calibrated_probability

STANDARD_POINTS = (("fpr-1%", 0.01), ("fpr-5%", 0.05), ("balanced", None))


def list_sha256(names, labels) -> str:
    """sha256 of the (name, label) list, one `name\\tlabel` line each, in the order given."""
    h = hashlib.sha256()
    for n, y in zip(names, labels):
        h.update(f"{n}\t{int(y)}\n".encode())
    return h.hexdigest()


def _nll_and_derivatives(a: float, z: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Mean binary NLL of sigmoid(a * z) and its first two derivatives in a (a = 1 / T)."""
    s = a * z
    nll = float(np.mean(np.logaddexp(0.0, s) - y * s))
    p = sigmoid(s)
    return nll, float(np.mean((p - y) * z)), float(np.mean(p * (1 - p) * z * z))


def fit_temperature(logits, labels, iterations: int = 100) -> float:
    """The temperature T minimising the NLL of sigmoid(logit / T): Newton's method on a = 1/T
    (the NLL is convex in a), with step halving; T kept in [1e-3, 1e3]."""
    z = np.asarray(logits, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    a = 1.0
    nll, g, h = _nll_and_derivatives(a, z, y)
    for _ in range(iterations):
        step = g / h if h > 1e-12 else np.sign(g) * 0.1
        t = 1.0
        while t > 1e-6:
            cand = float(np.clip(a - t * step, 1e-3, 1e3))
            c_nll, c_g, c_h = _nll_and_derivatives(cand, z, y)
            if c_nll <= nll:
                break
            t /= 2
        else:
            break
        done = abs(cand - a) < 1e-10 * max(1.0, abs(a))
        a, nll, g, h = cand, c_nll, c_g, c_h
        if done or abs(g) < 1e-12:
            break
    return float(np.clip(1.0 / a, 1e-3, 1e3))


def fit_platt(logits, labels, iterations: int = 100) -> tuple[float, float]:
    """(temperature, bias) minimising the NLL of sigmoid(logit / T + b): Newton's method on
    (a = 1/T, b) (convex), with step halving; a kept positive so the map stays increasing."""
    z = np.asarray(logits, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    x = np.stack([z, np.ones_like(z)], 1)

    def nll(w):
        s = x @ w
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    w = np.array([1.0, 0.0])
    f = nll(w)
    for _ in range(iterations):
        p = sigmoid(x @ w)
        g = x.T @ (p - y) / len(y)
        h = (x * (p * (1 - p))[:, None]).T @ x / len(y) + 1e-12 * np.eye(2)
        step = np.linalg.solve(h, g)
        t = 1.0
        while t > 1e-8:
            cand = w - t * step
            cand[0] = max(cand[0], 1e-3)
            fc = nll(cand)
            if fc <= f:
                break
            t /= 2
        else:
            break
        done = np.abs(cand - w).max() < 1e-12
        w, f = cand, fc
        if done:
            break
    return float(1.0 / w[0]), float(np.clip(w[1], -100.0, 100.0))


def fit_isotonic(probs, labels) -> tuple[list, list]:
    """Knots (x, y) of the least-squares non-decreasing fit of labels on probs (pool adjacent
    violators over ties-merged points), read back by linear interpolation between knots."""
    p = np.asarray(probs, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    xs, inverse = np.unique(p, return_inverse=True)
    weight = np.bincount(inverse).astype(np.float64)
    mean = np.bincount(inverse, weights=y) / weight
    blocks: list[list] = []  # [value, weight, first, last] per pooled block
    for i, (v, w) in enumerate(zip(mean, weight)):
        blocks.append([v, w, i, i])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            v2, w2, _, l2 = blocks.pop()
            v1, w1, f1, _ = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, f1, l2])
    kx, ky = [], []
    for v, _, first, last in blocks:  # each block's ends carry its value
        for i in sorted({first, last}):
            kx.append(float(xs[i]))
            ky.append(float(np.clip(v, 0.0, 1.0)))
    return kx, ky


def strictly_increasing(kx, ky, tie_slope: float = 1e-3) -> tuple[list, list]:
    """The isotonic step function blended with the identity, (1 - e) * iso(p) + e * p, as knots
    on [0, 1]. A step function ties every score inside a flat block, which reorders nothing
    but changes AUC (ties count half); the blend is strictly increasing everywhere, so two
    images keep their order, AUC is the raw one, and P moves by at most `tie_slope`."""
    x = np.r_[0.0, np.asarray(kx, np.float64), 1.0]
    y = np.r_[ky[0], np.asarray(ky, np.float64), ky[-1]]
    keep = np.r_[True, np.diff(x) > 0]
    x, y = x[keep], y[keep]
    y = (1.0 - tie_slope) * y + tie_slope * x
    return x.tolist(), np.clip(y, 0.0, 1.0).tolist()


def fit_calibration(logits, labels, method: str = "temperature", data: dict | None = None) -> ProbabilityCalibration:
    if method == "temperature":
        cal = ProbabilityCalibration("temperature", temperature=fit_temperature(logits, labels))
    elif method == "platt":
        t, b = fit_platt(logits, labels)
        cal = ProbabilityCalibration("platt", temperature=t, bias=b)
    elif method == "isotonic":
        kx, ky = strictly_increasing(*fit_isotonic(sigmoid(np.asarray(logits, np.float64)), labels))
        cal = ProbabilityCalibration("isotonic", x=kx, y=ky)
    else:
        raise ValueError(f"unknown calibration method '{method}' (known: temperature, platt, isotonic)")
    cal.data = data or {"count": int(np.size(labels)), "list_sha256": "0" * 64}
    return cal.validate()


def calibration_metrics(logits, labels, calibration: ProbabilityCalibration, bins: int = 10) -> dict:
    """ECE, NLL-free summary and AUC of the raw and the calibrated P(fake) on one labelled set."""
    y = np.asarray(labels, np.int64)
    before = sigmoid(np.asarray(logits, np.float64))
    after = calibrated_probability(logits, calibration)
    return {
        "images": int(y.size), "bins": bins,
        "ece_before": metrics.expected_calibration_error(y, before, bins),
        "ece_after": metrics.expected_calibration_error(y, after, bins),
        "auc_before": metrics.roc_auc(y, before),
        "auc_after": metrics.roc_auc(y, after),
    }


def _balanced_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """The score threshold that maximises TPR - FPR (balanced accuracy); the highest on ties."""
    fpr, tpr, thr = metrics.roc_curve(y, s)
    k = int(np.argmax(tpr[1:] - fpr[1:])) + 1
    return float(thr[k])


def measure_operating_points(probs, labels, data: dict, points=STANDARD_POINTS) -> list[OperatingPoint]:
    """Each named point's threshold on `probs` (the P(fake) the runtime will report) and the
    TPR / FPR measured at it on this set. `points`: (name, target FPR or None for balanced)."""
    y = np.asarray(labels, np.int64)
    s = np.asarray(probs, np.float64)
    out = []
    for name, target in points:
        if target is None:
            thr, rule = _balanced_threshold(y, s), "threshold maximising TPR - FPR (balanced accuracy)"
        else:
            thr, rule = metrics.threshold_for_fpr(y, s, target), f"lowest threshold with FPR <= {target:g}"
        thr = float(min(thr, 1.0))
        at = metrics.accuracy_at(y, s, thr)
        out.append(OperatingPoint(name, thr, at["fake_accuracy"], 1.0 - at["real_accuracy"], rule, dict(data)).validate())
    return out
