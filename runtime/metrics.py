"""Binary detection metrics in numpy (no sklearn, no torch): label 1 = fake, a higher score = more fake.

Decision rule everywhere: an image is called fake when ``score >= threshold`` (as the
runtime's Detector does). Ties are handled exactly: images with equal scores move across
a threshold together, so curves have one point per distinct score.
"""

from __future__ import annotations

import numpy as np


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
