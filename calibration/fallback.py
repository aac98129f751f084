"""The mixed-precision fallback: keep the most sensitive layer groups in float, one more at
a time, until the AUC drop, the score shift (mean |P_int8 - P_fp32|) and, for a package with
an evidence map, the map shift (mean |delta P| per region) are all within budget."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fakedet.manifest import OutputSpec

from .feeds import batch_rows
from .guard import compare
from .ort_run import logits_of
from .sensitivity import DEFAULT_BUDGET_S, rank_layer_groups
from .surgery import keep_float

log = logging.getLogger("fakedet.calibration")


@dataclass(frozen=True, kw_only=True)
class Budgets:
    """What the fallback may spend and must meet; named, so two of a kind cannot be swapped."""

    max_auc_drop: float  # largest FP32 -> INT8 AUC drop accepted
    max_float_groups: int  # most layer groups kept in float
    max_score_shift: float | None = None  # largest mean |P_int8 - P_fp32|; None: not judged
    max_map_shift: float | None = None  # largest mean |delta P| per evidence-map region; None: not judged
    sensitivity_images: int | None = 32  # held-out images the per-layer ranking runs on
    sensitivity_seconds: float | None = DEFAULT_BUDGET_S  # exact per-layer measurement time

    def auc_ok(self, result: dict) -> bool:
        return result["auc_drop"] <= self.max_auc_drop

    def shift_ok(self, result: dict) -> bool:
        score = self.max_score_shift is None or result["shift"]["mean_abs_dp"] <= self.max_score_shift
        region = result.get("map_shift")
        return score and (self.max_map_shift is None or region is None or region <= self.max_map_shift)


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


def fallback(qdq_model, fp32_model, batches, labels: np.ndarray, l32: np.ndarray, output: OutputSpec,
             threshold: float, budgets: Budgets, progress: bool = True, exact: bool = False, map_shift=None):
    """Greedy mixed precision. Returns (model, result dict, that model's logits on `batches`).
    The ranking (one INT8 run per layer group) uses up to `budgets.sensitivity_images` held-out
    images spread over the set: it orders layers by logit error, which a few dozen images
    estimate well; every greedy step is then judged on the whole held-out set. It engages
    when either budget is exceeded; `passed` is the AUC verdict, `shift_passed` the
    score-shift one. When the shift budget cannot be met, the model kept is the first step
    that meets the AUC budget (no layer is left in float for a shift it does not cure); when
    no step meets the AUC budget, the one with the smallest AUC drop.
    `exact`: judge the exact quantization arithmetic instead of this CPU's INT8 kernels.
    `map_shift(model)`: the mean |delta P| of the evidence map's regions against FP32 (None:
    the model has no map), judged against `budgets.max_map_shift` with the score shift."""
    auc_ok, shift_ok = budgets.auc_ok, budgets.shift_ok

    def judged(model, l8):
        out = compare(labels, l32, l8, threshold)
        if map_shift is not None:
            out["map_shift"] = map_shift(model)
        return out

    l8 = logits_of(qdq_model, batches, output, exact)
    first = judged(qdq_model, l8)
    result = {"initial": first, "max_auc_drop": budgets.max_auc_drop, "max_score_shift": budgets.max_score_shift,
              "max_map_shift": budgets.max_map_shift, "kept_float": [], "sensitivity": [], "steps": []}  # fmt: skip
    if auc_ok(first) and shift_ok(first):
        result.update(final=first, passed=True, shift_passed=True)
        return qdq_model, result, l8
    log.warning(
        "INT8 AUC drop %.4f (budget %.4f), mean |dP| %.4f (budget %s), map mean |dP| %s (budget %s): running "
        "per-layer sensitivity", first["auc_drop"], budgets.max_auc_drop, first["shift"]["mean_abs_dp"],
        budgets.max_score_shift, first.get("map_shift"), budgets.max_map_shift,
    )  # fmt: skip
    sub, l32_sub, labels_sub = spread_subset(batches, l32, labels, budgets.sensitivity_images)
    ranking, result["sensitivity_search"] = rank_layer_groups(
        qdq_model, fp32_model, sub, l32_sub, labels_sub, output, progress, budgets.sensitivity_seconds, exact)
    result["sensitivity"] = ranking
    result["sensitivity_images"] = int(l32_sub.size)
    kept: list[dict] = []
    tried = [([], qdq_model, first, l8)]
    for row in ranking[:budgets.max_float_groups]:
        kept.append(row)
        model = keep_float(qdq_model, fp32_model, [n for r in kept for n in r["nodes"]])
        l8 = logits_of(model, batches, output, exact)
        final = judged(model, l8)
        tried.append((list(kept), model, final, l8))
        result["steps"].append({"kept_float": [r["name"] for r in kept], "auc_drop": final["auc_drop"],
                                "mean_abs_dp": final["shift"]["mean_abs_dp"], "map_shift": final.get("map_shift")})  # fmt: skip
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
