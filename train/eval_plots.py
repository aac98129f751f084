"""`fakedet eval`'s figures: ROC curves and the robustness sweep, written as PNG atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedet.atomic import atomic_output


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(path: Path, overall, per_generator: dict, auc: float, info: dict, dashed: dict | None = None) -> None:
    """The overall ROC (bold), one per generator, and `dashed` curves (a control, e.g. the
    shuffled-caption one), each labelled with its AUC."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    curves = [(g, c, "-") for g, c in per_generator.items()] + [(g, c, "--") for g, c in (dashed or {}).items()]
    for g, (f, t, _), ls in curves:
        area = float(np.sum(np.diff(f) * (t[1:] + t[:-1]) / 2))
        ax.plot(f, t, lw=1, ls=ls, alpha=0.7, label=f"{g} (AUC {area:.4f})")
    ax.plot(*overall, lw=2, color="black", label=f"all (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="false-positive rate (reals called fake)", ylabel="true-positive rate (fakes caught)",
           xlim=(0, 1), ylim=(0, 1.01), title=f"ROC: {info.get('name') or info.get('arch', '')} ({info['kind']})")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_robustness(path: Path, overall: dict, rows: list[dict]) -> None:
    plt = _pyplot()
    fams = list(dict.fromkeys(r["family"] for r in rows))
    fig, axes = plt.subplots(1, len(fams), figsize=(3.2 * len(fams), 3.2), dpi=120, squeeze=False)
    for ax, fam in zip(axes[0], fams):
        rs = [r for r in rows if r["family"] == fam]
        x = [r["value"] for r in rs]
        for key, style in (("auc", "o-"), ("ap", "s--"), ("accuracy", "^:")):
            ax.plot(x, [r[key] for r in rs], style, label=key)
            ax.axhline(overall[key], color=ax.lines[-1].get_color(), lw=0.6, alpha=0.5)
        ax.set(title=fam, xlabel={"downscale": "scale factor", "jpeg": "quality", "webp": "quality",
                                  "blur": "sigma (px)"}.get(fam, fam), ylim=(0, 1.02))
        if fam in ("downscale", "jpeg", "webp"):
            ax.invert_xaxis()  # stronger degradation to the right
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("robustness (thin lines: clean)", fontsize=9)
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
