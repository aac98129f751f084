"""Accuracy guard: what INT8 logits say against FP32 ones on held-out data (AUC, AP,
accuracy, calibration error, the score shift mean |P_int8 - P_fp32|). The per-layer ranking
lives in sensitivity.py, the mixed-precision fallback that uses it in fallback.py."""

from __future__ import annotations

import numpy as np

from fakedet.runtime.metrics import accuracy_at, average_precision, expected_calibration_error, roc_auc
from fakedet.runtime.scoring import sigmoid


def score_shift(l32: np.ndarray, l8: np.ndarray, threshold: float) -> dict:
    p32, p8 = sigmoid(l32), sigmoid(l8)
    dp = np.abs(p8 - p32)
    s32 = float(np.std(l32))
    return {
        "mean_abs_dp": float(dp.mean()),
        "p99_abs_dp": float(np.quantile(dp, 0.99)),
        "max_abs_dp": float(dp.max()),
        "mean_abs_dlogit": float(np.abs(l8 - l32).mean()),
        "logit_spread_ratio": float(np.std(l8) / s32) if s32 > 0 else None,  # < 1: INT8 squashes confidences
        "decision_agreement": float(np.mean((p32 >= threshold) == (p8 >= threshold))),
        "distinct_scores_fp32": int(np.unique(p32).size),
        "distinct_scores_int8": int(np.unique(p8).size),
    }


def compare(labels: np.ndarray | None, l32: np.ndarray, l8: np.ndarray, threshold: float) -> dict:
    """Everything the report says about INT8 against FP32 on one set of images."""
    out = {"images": int(l32.size), "threshold": threshold, "shift": score_shift(l32, l8, threshold)}
    if labels is not None and set(np.unique(labels)) == {0, 1}:
        p32, p8 = sigmoid(l32), sigmoid(l8)
        for tag, p in (("fp32", p32), ("int8", p8)):
            out[tag] = {
                "auc": roc_auc(labels, p),
                "ap": average_precision(labels, p),
                **accuracy_at(labels, p, threshold),
                "ece": expected_calibration_error(labels, p),
            }
        out["auc_drop"] = out["fp32"]["auc"] - out["int8"]["auc"]
        out["ap_drop"] = out["fp32"]["ap"] - out["int8"]["ap"]
    return out
