"""PNG of a bench report: latency (p50, whisker up to p99) and throughput against
batch size, one line per backend/precision. matplotlib (Agg) is imported only here."""

from __future__ import annotations

from pathlib import Path

from fakedet.atomic import atomic_output
from fakedet.errors import FakedetError


def series(report: dict) -> dict[str, list[dict]]:
    """{'backend precision': rows sorted by batch}."""
    out: dict[str, list[dict]] = {}
    for r in report["results"]:
        out.setdefault(f"{r['backend']} {r['precision']}", []).append(r)
    return {k: sorted(v, key=lambda r: r["batch"]) for k, v in out.items()}


def write_plot(report: dict, path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FakedetError("--plot needs matplotlib (pip install matplotlib)") from None
    if not report["results"]:
        raise FakedetError("nothing was measured, so there is nothing to plot")
    fig, (ax_lat, ax_thr) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, rows in series(report).items():
        b = [r["batch"] for r in rows]
        p50 = [r["latency_ms"]["p50"] for r in rows]
        hi = [max(r["latency_ms"]["p99"] - p, 0.0) for p, r in zip(p50, rows)]
        ax_lat.errorbar(b, p50, yerr=[[0.0] * len(hi), hi], marker="o", capsize=3, label=label)
        thr = [r["throughput_img_s"]["median"] for r in rows]
        err = [[t - r["throughput_img_s"]["min"] for t, r in zip(thr, rows)],
               [r["throughput_img_s"]["max"] - t for t, r in zip(thr, rows)]]
        ax_thr.errorbar(b, thr, yerr=err, marker="o", capsize=3, label=label)
    batches = sorted({r["batch"] for r in report["results"]})
    for ax in (ax_lat, ax_thr):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.grid(True, alpha=0.3)
    ax_lat.set_ylabel("ms per batch (p50, whisker to p99)")
    ax_lat.set_yscale("log")
    ax_lat.set_title("latency", fontsize=10)
    ax_thr.set_ylabel("images/s (median, whiskers min-max)")
    ax_thr.set_title("throughput", fontsize=10)
    ax_thr.legend(fontsize=8)
    fig.suptitle(f"fakedet bench: {report['package']['name']} on {report['machine'].get('hostname', '?')}")
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
