"""A verdict from a logit: the package's probability calibration applied (numpy only), and
the decision threshold picked from --threshold, a named operating point, or the manifest."""

from __future__ import annotations

import numpy as np

from fakedet.errors import FakedetError
from fakedet.manifest import Manifest
from fakedet.verdict_fields import ProbabilityCalibration

from .scoring import sigmoid


def calibrated_probability(logits, calibration: ProbabilityCalibration | None) -> np.ndarray:
    """P(fake) for logits: sigmoid without a calibration, else the calibrated map (monotone
    in the logit, so the ranking of images, hence AUC, is kept)."""
    z = np.asarray(logits, dtype=np.float64)
    if calibration is None:
        return sigmoid(z)
    if calibration.method in ("temperature", "platt"):
        return sigmoid(z / calibration.temperature + calibration.bias)
    return np.interp(sigmoid(z), np.asarray(calibration.x, np.float64), np.asarray(calibration.y, np.float64))


def decision_threshold(manifest: Manifest, threshold: float | None = None,
                       operating_point: str | None = None) -> tuple[float, str | None]:
    """(threshold on P(fake), the operating point's name or None). An explicit threshold and
    an operating point together are refused: which one decides would be a guess."""
    if threshold is not None and operating_point is not None:
        raise FakedetError("give a threshold or an operating point, not both")
    if operating_point is not None:
        return manifest.operating_point(operating_point).threshold, operating_point
    return (float(threshold) if threshold is not None else manifest.threshold.value), None


def verdict_summary(manifest: Manifest) -> dict:
    """The package's calibration and operating points, as `info --json`, the service's model
    summary and the docs show them."""
    cal = manifest.calibration
    return {
        "calibration": None if cal is None else {"method": cal.method, "temperature": cal.temperature
                                                 if cal.method != "isotonic" else None,
                                                 "bias": cal.bias if cal.method == "platt" else None,
                                                 "fitted_on": cal.data, "metrics": cal.metrics},
        "operating_points": [p.to_dict() for p in manifest.operating_points],
    }


def verdict_lines(manifest: Manifest) -> list[str]:
    """`fakedet info`'s lines: the calibration, then one line per operating point."""
    cal = manifest.calibration
    lines = []
    if cal is not None:
        how = {"temperature": f"temperature {cal.temperature:.4g}",
               "platt": f"platt, temperature {cal.temperature:.4g}, bias {cal.bias:+.4g}"}.get(
            cal.method, f"isotonic, {len(cal.x)} knots")
        ece = cal.metrics
        lines.append(f"calibration  {how}, fitted on {cal.data.get('count')} images"
                     + (f"; ECE {ece['ece_before']:.4f} -> {ece['ece_after']:.4f} held out" if "ece_after" in ece else ""))
    for p in manifest.operating_points:
        lines.append(f"op point     {p.name:<10} threshold {p.threshold:.6g}  TPR {p.tpr:.4f}  FPR {p.fpr:.4f}  "
                     f"({p.data.get('count')} images, list {str(p.data.get('list_sha256'))[:12]})")
    return lines
