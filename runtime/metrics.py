"""Binary detection metrics in numpy (no sklearn, no torch): label 1 = fake, a higher score = more fake.

Decision rule everywhere: an image is called fake when ``score >= threshold`` (as the
runtime's Detector does). Ties are handled exactly: images with equal scores move across
a threshold together, so curves have one point per distinct score.
"""

from __future__ import annotations

import numpy as np

from .scoring import sigmoid


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    y = y.astype(np.int64)
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError("both real (0) and fake (1) labels are needed")
    return y, s


def _counts_by_threshold(y: np.ndarray, s: np.ndarray):
    """Distinct scores in decreasing order, with cumulative (fake, real) counts at score >= each."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # last index of each run of equal scores
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    return s_sorted[last], tp, fp


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), one point per distinct score plus the (0, 0) start at +inf.

    Same points as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``."""
    y, s = _check(labels, scores)
    thr, tp, fp = _counts_by_threshold(y, s)
    pos, neg = tp[-1], fp[-1]
    fpr = np.r_[0.0, fp / neg]
    tpr = np.r_[0.0, tp / pos]
    return fpr, tpr, np.r_[np.inf, thr]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve = P(score_fake > score_real) + 0.5 * P(equal)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(labels, scores) -> float:
    """Step-wise AP: sum over distinct thresholds of (R_n - R_{n-1}) * P_n (scikit-learn's definition)."""
    y, s = _check(labels, scores)
    _, tp, fp = _counts_by_threshold(y, s)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def accuracy_at(labels, scores, threshold: float) -> dict:
    """Accuracy, real accuracy, fake accuracy and their mean (balanced) at ``score >= threshold``."""
    y, s = _check(labels, scores)
    pred = s >= threshold
    real_acc = float(np.mean(~pred[y == 0]))
    fake_acc = float(np.mean(pred[y == 1]))
    return {
        "accuracy": float(np.mean(pred == (y == 1))),
        "real_accuracy": real_acc,
        "fake_accuracy": fake_acc,
        "balanced_accuracy": (real_acc + fake_acc) / 2.0,
    }


def threshold_for_fpr(labels, scores, target_fpr: float) -> float:
    """The lowest threshold (a score value) whose false-positive rate is <= target_fpr.

    Lowest means the highest true-positive rate among thresholds that meet the target.
    If no score value meets it (target 0 and a real holds the top score), returns the
    next float above the top score: nothing is called fake."""
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    y, s = _check(labels, scores)
    thr, _, fp = _counts_by_threshold(y, s)
    ok = np.flatnonzero(fp / fp[-1] <= target_fpr + 1e-12)
    if ok.size == 0:
        return float(np.nextafter(thr[0], np.inf))
    return float(thr[ok[-1]])


# ---- calibration of probabilities -------------------------------------------
def reliability_bins(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[tuple]:
    """(mean confidence, fraction positive, share of images) per non-empty equal-width
    probability bin, in bin order."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            out.append((probs[sel].mean(), labels[sel].mean(), sel.mean()))
    return out


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width probability bins, weighted by bin size."""
    err = 0.0
    for conf, acc, weight in reliability_bins(labels, probs, bins):
        err += weight * abs(acc - conf)
    return float(err)


# ---- during training: any logits, one class possibly missing -----------------
def _one_class(y: np.ndarray) -> bool:
    return not (y.any() and not y.all())


def auc_of_any_scores(labels, scores) -> float:
    """ROC AUC (ties count half) of scores that may hold +-inf or NaN; NaN when a class is
    missing. +-inf keep their rank; a NaN score never wins nor ties (it ranks below every
    score for a fake, above every score for a real)."""
    y = np.asarray(labels).reshape(-1) > 0.5
    if _one_class(y):
        return float("nan")
    big = np.finfo(np.float64).max / 4  # differences between scores stay finite
    s = np.clip(np.asarray(scores, dtype=np.float64).reshape(-1), -big / 2, big / 2)
    return roc_auc(y, np.where(np.isnan(s), np.where(y, -big, big), s))


def validation_metrics(labels, logits, threshold: float) -> dict:
    """The trainer's per-epoch figures from raw logits (sigmoid gives P(fake)): balanced,
    overall, real and fake accuracy at P >= threshold, AUC, and the image count. Safe for
    a validation set with one class (those accuracies are NaN) and for NaN logits (never
    called fake)."""
    y = np.asarray(labels).reshape(-1) > 0.5
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    prob = np.nan_to_num(sigmoid(z), nan=-np.finfo(np.float64).max)
    if not _one_class(y):
        acc = accuracy_at(y, prob, threshold)
    else:  # one class only: the missing class's accuracy (and the balanced one) is NaN
        a = float(np.mean((prob >= threshold) == y)) if y.size else float("nan")
        real_acc = a if y.size and not y.any() else float("nan")
        fake_acc = a if y.size and y.all() else float("nan")
        acc = {"accuracy": a, "real_accuracy": real_acc, "fake_accuracy": fake_acc,
               "balanced_accuracy": (real_acc + fake_acc) / 2}
    return {
        "balanced_accuracy": acc["balanced_accuracy"],
        "accuracy": acc["accuracy"],
        "real_accuracy": acc["real_accuracy"],
        "fake_accuracy": acc["fake_accuracy"],
        "auc": auc_of_any_scores(y, z),
        "images": int(y.size),
    }
