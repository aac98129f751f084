"""The calibration report's figure: how INT8 moves the scores (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedet.atomic import atomic_output
from fakedet.runtime.metrics import reliability_bins
from fakedet.runtime.scoring import sigmoid


def _reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10):
    rows = reliability_bins(labels, probs, bins)
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def score_figure(path: str | Path, l32: np.ndarray, l8: np.ndarray, labels: np.ndarray | None, title: str) -> None:
    """Scatter of P(fake) FP32 vs INT8, their histograms, and (with labels) reliability curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p32, p8 = sigmoid(l32), sigmoid(l8)
    n = 3 if labels is not None else 2
    fig, ax = plt.subplots(1, n, figsize=(4.2 * n, 4))
    ax[0].scatter(p32, p8, s=8, alpha=0.6)
    ax[0].plot([0, 1], [0, 1], "k--", lw=0.8)
    ax[0].set(xlabel="P(fake) FP32", ylabel="P(fake) INT8", title="score shift", xlim=(0, 1), ylim=(0, 1))
    bins = np.linspace(0, 1, 26)
    ax[1].hist(p32, bins=bins, alpha=0.5, label="FP32")
    ax[1].hist(p8, bins=bins, alpha=0.5, label="INT8")
    ax[1].set(xlabel="P(fake)", ylabel="images", title="score histogram")
    ax[1].legend()
    if labels is not None:
        for tag, p in (("FP32", p32), ("INT8", p8)):
            c, a = _reliability(labels, p)
            ax[2].plot(c, a, "o-", label=tag)
        ax[2].plot([0, 1], [0, 1], "k--", lw=0.8)
        ax[2].set(xlabel="mean P(fake)", ylabel="fraction fake", title="calibration of confidence", xlim=(0, 1), ylim=(0, 1))
        ax[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
