"""Accuracy guard: FP32 against INT8 on held-out data, per-layer sensitivity, and the
mixed-precision fallback that keeps the most sensitive layer groups in float until the
AUC drop and the score shift (mean |P_int8 - P_fp32|) are both within budget."""

from __future__ import annotations

import logging

import numpy as np

from fakedet.manifest import OutputSpec
from fakedet.runtime.metrics import accuracy_at, average_precision, expected_calibration_error, roc_auc
from fakedet.runtime.ort_session import cpu_session
from fakedet.runtime.scoring import fake_logits, sigmoid

from .dataset import progress_bar
from .feeds import batch_rows, feed
from .sensitivity import DEFAULT_BUDGET_S, rank_layer_groups
from .surgery import keep_float, layer_groups

log = logging.getLogger("fakedet.calibration")


def session(model, threads: int | None = None, exact: bool = False):
    """An ORT CPU session from a path or an in-memory ModelProto (`threads`: intra-op threads).
    `exact`: graph optimizations off, so a QDQ model runs as the exact quantization arithmetic
    (Q/DQ as written, float ops between them) instead of ORT's fused INT8 kernels, whose
    results differ by CPU tier (runtime/cpu_tier.py): what TensorRT's INT8 approximates."""
    return cpu_session(model, threads=threads, optimization="none" if exact else "all")


def logits_of(model, batches, output: OutputSpec, exact: bool = False) -> np.ndarray:
    sess = session(model, exact=exact)
    out = [fake_logits(sess.run(None, feed(sess, b))[0], output) for b in batches]
    return np.concatenate(out) if out else np.zeros(0)


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


def sensitivity(qdq_model, fp32_model, batches, l32: np.ndarray, labels, output: OutputSpec, progress=True,
                exact: bool = False) -> list[dict]:
    """Keep one layer group in float at a time; measure the logit error against FP32 (and AUC)."""
    groups = layer_groups(fp32_model)
    rows = []
    for grp in progress_bar(groups, progress, desc="layer sensitivity", unit="layer"):
        m = keep_float(qdq_model, fp32_model, grp.nodes)
        l8 = logits_of(m, batches, output, exact)
        row = {**grp.to_dict(), "logit_mse": float(np.mean((l8 - l32) ** 2))}
        if labels is not None and np.unique(labels).size == 2:
            row["auc"] = roc_auc(labels, sigmoid(l8))
        rows.append(row)
    return sorted(rows, key=lambda r: r["logit_mse"])


def spread_subset(batches, l32: np.ndarray, labels, max_images: int | None):
    """Whole batches spread evenly over the set (classes are stored in order), with their
    FP32 logits and labels, holding at most about `max_images` images."""
    sizes = [batch_rows(b) for b in batches]
    if max_images is None or sum(sizes) <= max_images:
        return batches, l32, labels
    per = max(1, round(max_images / max(sizes)))
    picks = sorted({int(i) for i in np.linspace(0, len(batches) - 1, per).round()})
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in picks])
    return [batches[i] for i in picks], l32[rows], (labels[rows] if labels is not None else None)


def fallback(
    qdq_model,
    fp32_model,
    batches,
    labels: np.ndarray,
    l32: np.ndarray,
    output: OutputSpec,
    threshold: float,
    max_auc_drop: float,
    max_float_groups: int,
    progress: bool = True,
    sensitivity_images: int | None = 32,
    max_score_shift: float | None = None,
    sensitivity_budget: float | None = DEFAULT_BUDGET_S,
    exact: bool = False,
):
    """Greedy mixed precision. Returns (model, result dict, that model's logits on `batches`).
    The ranking (one INT8 run per layer group) uses up to `sensitivity_images` held-out
    images spread over the set: it orders layers by logit error, which a few dozen images
    estimate well; every greedy step is then judged on the whole held-out set. It engages
    when either budget is exceeded; `passed` is the AUC verdict, `shift_passed` the
    score-shift one. When the shift budget cannot be met, the model kept is the first step
    that meets the AUC budget (no layer is left in float for a shift it does not cure); when
    no step meets the AUC budget, the one with the smallest AUC drop.
    `exact`: judge the exact quantization arithmetic instead of this CPU's INT8 kernels."""

    def auc_ok(r):
        return r["auc_drop"] <= max_auc_drop

    def shift_ok(r):
        return max_score_shift is None or r["shift"]["mean_abs_dp"] <= max_score_shift

    l8 = logits_of(qdq_model, batches, output, exact)
    first = compare(labels, l32, l8, threshold)
    result = {"initial": first, "max_auc_drop": max_auc_drop, "max_score_shift": max_score_shift,
              "kept_float": [], "sensitivity": [], "steps": []}  # fmt: skip
    if auc_ok(first) and shift_ok(first):
        result.update(final=first, passed=True, shift_passed=True)
        return qdq_model, result, l8
    log.warning(
        "INT8 AUC drop %.4f (budget %.4f), mean |dP| %.4f (budget %s): running per-layer sensitivity",
        first["auc_drop"], max_auc_drop, first["shift"]["mean_abs_dp"], max_score_shift,
    )  # fmt: skip
    sub, l32_sub, labels_sub = spread_subset(batches, l32, labels, sensitivity_images)
    ranking, result["sensitivity_search"] = rank_layer_groups(
        qdq_model, fp32_model, sub, l32_sub, labels_sub, output, progress, sensitivity_budget, exact)
    result["sensitivity"] = ranking
    result["sensitivity_images"] = int(l32_sub.size)
    kept: list[dict] = []
    tried = [([], qdq_model, first, l8)]
    for row in ranking[:max_float_groups]:
        kept.append(row)
        model = keep_float(qdq_model, fp32_model, [n for r in kept for n in r["nodes"]])
        l8 = logits_of(model, batches, output, exact)
        final = compare(labels, l32, l8, threshold)
        tried.append((list(kept), model, final, l8))
        result["steps"].append({"kept_float": [r["name"] for r in kept], "auc_drop": final["auc_drop"],
                                "mean_abs_dp": final["shift"]["mean_abs_dp"]})  # fmt: skip
        log.info("keeping %s in float: AUC drop %.4f, mean |dP| %.4f", row["name"], final["auc_drop"],
                 final["shift"]["mean_abs_dp"])  # fmt: skip
        if auc_ok(final) and shift_ok(final):
            break
    pick = next((t for t in tried if auc_ok(t[2]) and shift_ok(t[2])), None)
    # none passes: the step with the smallest AUC drop (more float layers need not mean
    # less drop on a finite held-out set), never merely the last one tried
    pick = pick or next((t for t in tried if auc_ok(t[2])), None) or min(tried, key=lambda t: t[2]["auc_drop"])
    kept, model, final, l8 = pick
    result["kept_float"] = [{"name": r["name"], "op_type": r["op_type"], "nodes": r["nodes"]} for r in kept]
    result["final"] = final
    result["passed"] = bool(auc_ok(final))
    result["shift_passed"] = bool(shift_ok(final))
    return model, result, l8
