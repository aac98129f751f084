"""The calibration report: calibration.json's content, and its figure (how INT8 moves the
scores; matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedet.atomic import atomic_output
from fakedet.runtime.reliability_plot import draw_reliability
from fakedet.runtime.scoring import sigmoid

from .files import CACHE_FILE, CPU_WEIGHTS, INT8_CPU_FILE, INT8_FILE


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
        draw_reliability(ax[2], labels, {"FP32": p32, "INT8": p8})
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def calibration_report(key, ranges_key, rng, params, calib, eval_set, opts, model_sha, float_tensors, built,
            speed, cpu) -> dict:
    """calibration.json: keys, data, how it was quantized, the guard per artifact, the CPU facts, the ranges."""
    guard = built["tensorrt"].guard
    return {
        "key": key,
        "ranges_key": ranges_key,
        "ranges_reused": rng.reused,
        "method": opts.method,
        "method_params": params,
        "samples": len(calib),
        "samples_asked": opts.samples,
        "seed": opts.seed,
        "per_channel": opts.per_channel,
        "model_sha256": model_sha,
        "data_digest": calib.digest,
        "calibration_data": calib.summary(),
        "eval_data": eval_set.summary() if eval_set else None,
        "quantization": {
            "library": f"onnxruntime {ort_version()} quantize_static (QDQ)",
            "activations": (f"{INT8_FILE} (tensorrt): int8 symmetric, zero-point 0; {INT8_CPU_FILE} (ort-cpu): "
                            "uint8 asymmetric, zero-point 0 on tensors non-negative by construction (ReLU "
                            "outputs), 128 elsewhere; both from the same ranges"),
            "weights": (f"int8 symmetric, {'per-channel' if opts.per_channel else 'per-tensor'}; {INT8_CPU_FILE}: "
                        f"{CPU_WEIGHTS} (cannot saturate ONNX Runtime's u8 x s8 kernels on x86 without VNNI)"),
            "placement": (
                "inputs and outputs of convs, relus, adds, pools (a conv output read only by a relu takes "
                "the relu's range); one Q/DQ pair per consumer; none on the model's outputs"
            ),
        },
        "trt_cache": {
            "file": CACHE_FILE,
            "version": opts.trt_version,
            "calibrator": opts.trt_calibrator,
            "tensors": len([k for k in rng.amax if k not in float_tensors]),
            "omitted_float_tensors": sorted(float_tensors & set(rng.amax)),
        },
        "guard": guard,  # of the TensorRT artifact (model.int8.onnx); per artifact under "artifacts"
        "kept_float": [g["name"] for g in guard["kept_float"]],
        "artifacts": {
            b.file: {
                "target": t,
                "activations": b.activations,
                "weights": b.weights,
                **(cpu.report_fields() if t == "ort-cpu" else {}),
                **({"text_tower": b.text_tower} if b.text_tower is not None else {}),
                "guard": b.guard,
                "kept_float": b.kept_float_names,
            }
            for t, b in built.items()
        },
        "cpu_speed": speed,
        "range_notes": rng.notes,  # tensors kept in float for want of a range, min-max fallbacks
        "validated_cpu": cpu.validated_cpu,
        "ranges": rng.amax,
    }
