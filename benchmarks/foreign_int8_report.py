"""The Markdown table and figure of benchmarks/foreign_int8.py (from its results JSON)."""

from __future__ import annotations

import re
from pathlib import Path

FP32 = "ort fp32"
INT8_COLUMNS = (("fakedet int8", "fakedet INT8"), ("fakedet int8 raw", "fakedet INT8 as exported"),
                ("fakedet int8 onnxslim", "fakedet INT8 via onnxslim"), ("ort qdq", "ORT quantize_static QDQ"))


def _ratio(row: dict, key: str) -> str:
    ips = row["img_s"]
    return f"{ips[key] / ips[FP32]:.2f}x" if key in ips else "-"


def _agree(rec: dict | None) -> str:
    if rec and "refused" in rec:
        drop = re.search(r"AUC drop ([0-9.]+)", rec["refused"])
        return f"guard refused INT8 (AUC drop {drop.group(1) if drop else '?'} after the fallback)"
    if not rec or "heldout" not in rec:
        return (rec or {}).get("error", "-")[:60]
    h = rec["heldout"]
    return f"{h['auc_on_fp32_ranking']:.3f} / {h['max_dlogit_over_fp32_std']:.3f}"


def _columns(res: dict) -> list:
    return [(k, t) for k, t in INT8_COLUMNS if any(k in r["img_s"] for r in res["rows"])]


def markdown(res: dict) -> str:
    cols = _columns(res)
    lines = [
        "# INT8 on foreign ONNX models (benchmarks/foreign_int8.py)",
        "",
        f"CPU: {res['cpu']} ({res['threads']} threads; {', '.join(res['features'])}); batch {res['batch']}; "
        f"img/s = median of interleaved repeats; load at the end: `{res['uptime']}`.",
        f"Command (the latest run; rows of other models come from earlier runs on the same --work folder, each "
        f"row's load average in the JSON): `{res['command']}`",
        "",
        "Speed, as a ratio to ONNX Runtime FP32 on the ONNX file as exported (img/s in brackets):",
        "",
        "| model | torch eager | ORT FP32 | " + " | ".join(t for _, t in cols) + " | auto picks (normalised / as exported) |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in cols) + " | --- |",
    ]
    for r in res["rows"]:
        ips = r["img_s"]
        cells = [f"{_ratio(r, k)} ({ips[k]:.1f})" if k in ips else "-" for k, _ in cols]
        autos = " / ".join(r[v]["auto"] for v in ("normalised", "raw") if v in r)
        lines.append(f"| {r['model']} | {_ratio(r, 'torch eager')} ({ips['torch eager']:.1f}) | 1.00x ({ips[FP32]:.1f}) | "
                     + " | ".join(cells) + f" | {autos} |")
    lines += [
        "",
        "Agreement with FP32 on the held-out images (a random-init net detects nothing, so the labels are FP32's own "
        "decision at its median logit): AUC of the INT8 logits on those labels (1.000 = FP32's ranking kept) / max "
        "|logit diff| over the std of FP32's logits; the accuracy guard's AUC drop on the same labels and "
        "calibration's own CPU check:",
        "",
        "| model | fakedet INT8 | guard AUC drop | CPU check in calibrate | layers kept float | as exported | ORT QDQ | graph normalisation |",
        "| --- | --- | ---: | ---: | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        n = r.get("normalised", {})
        g = n.get("guard", {})
        drop = f"{g['auc_drop']:+.4f}" if g else "-"
        check = f"{n['cpu_check']['speedup']:.2f}x" if "cpu_check" in n else "-"
        nm = n.get("normalisation", {})
        b, a = nm.get("before", {}), nm.get("after", {})
        norm = (f"Identity-fed inits {b.get('identity_fed_initializers')} -> {a.get('identity_fed_initializers')}, "
                f"max dlogit {nm.get('max_abs_logit_diff', 0):.2g}") if nm.get("applied") else nm.get("why_not", "-")
        lines.append(f"| {r['model']} | {_agree(n)} | {drop} | {check} | {len(n.get('kept_float', []))} | "
                     f"{_agree(r.get('raw'))} | {_agree(r.get('ort_qdq'))} | {norm} |")
    return "\n".join(lines) + "\n"


def figure(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = res["rows"]
    keys = ["torch eager", FP32] + [k for k, _ in _columns(res)]
    fig, ax = plt.subplots(figsize=(9, 4))
    w = 0.8 / len(keys)
    for i, k in enumerate(keys):
        vals = [r["img_s"].get(k, 0) / r["img_s"][FP32] for r in rows]
        ax.bar(np.arange(len(rows)) + i * w, vals, w, label=k)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(rows)) + 0.4 - w / 2, [r["model"] for r in rows], fontsize=8)
    ax.set_ylabel("throughput / ORT FP32 (batch 8)")
    ax.set_title(f"INT8 on foreign ONNX models: {res['cpu']}, {res['threads']} threads", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
