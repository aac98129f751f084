"""The reliability diagram (mean P(fake) per bin against the fraction of fakes in it), one
curve per score source: the INT8 report and the probability calibration both draw it.
matplotlib is imported by the caller's figure code only, never by the runtime's import."""

from __future__ import annotations

import numpy as np

from .metrics import reliability_bins


def reliability_curve(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rows = reliability_bins(np.asarray(labels), np.asarray(probs, np.float64), bins)
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def draw_reliability(ax, labels: np.ndarray, curves: dict, bins: int = 10, title: str = "calibration of confidence") -> None:
    """On a matplotlib axis: one reliability curve per {label: P(fake) array}, and the diagonal."""
    for tag, probs in curves.items():
        c, a = reliability_curve(labels, probs, bins)
        ax.plot(c, a, "o-", label=tag)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="mean P(fake)", ylabel="fraction fake", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend()
