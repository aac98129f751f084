"""Probability calibration and operating points, each against an independent reference:
scipy's optimiser for the temperature, scikit-learn's IsotonicRegression and roc_auc_score,
ECE and TPR/FPR recomputed here by hand."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from fakedet.errors import FakedetError, ManifestError
from fakedet.manifest import Manifest
from fakedet.runtime.verdict import calibrated_probability, decision_threshold
from fakedet.runtime.verdict_fit import (
    calibration_metrics, fit_calibration, fit_isotonic, fit_temperature, list_sha256, measure_operating_points,
)

SHA = "ab" * 32


def overconfident(n=800, seed=0, scale=4.0):
    """Labels from sigmoid(u); the model reports scale * u (too sharp by `scale`)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-u))).astype(np.int64)
    return scale * u, y


def ece_by_hand(y, p, bins=10):
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = [(pi, yi) for pi, yi in zip(p, y) if (lo <= pi < hi) or (b == bins - 1 and pi == 1.0)]
        if sel:
            conf = sum(s[0] for s in sel) / len(sel)
            acc = sum(s[1] for s in sel) / len(sel)
            total += len(sel) / len(p) * abs(acc - conf)
    return total


def test_temperature_is_the_nll_minimiser_scipy_finds():
    z, y = overconfident()
    t = fit_temperature(z, y)
    ref = minimize_scalar(lambda T: np.mean(np.logaddexp(0, z / T) - y * z / T), bounds=(0.01, 100),
                          method="bounded", options={"xatol": 1e-10})
    assert t == pytest.approx(ref.x, rel=1e-5)
    assert 3.0 < t < 5.5  # the data were made 4x too sharp


def test_platt_is_scikit_learns_unregularised_logistic_regression_on_the_logit():
    from sklearn.linear_model import LogisticRegression

    from fakedet.runtime.verdict_fit import fit_platt

    z, y = overconfident(seed=5)
    y = np.where(np.random.default_rng(6).random(y.size) < 0.3, 1, y)  # a prior the model never saw
    t, b = fit_platt(z, y)
    ref = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(z[:, None], y)
    assert 1 / t == pytest.approx(ref.coef_[0, 0], rel=1e-5) and b == pytest.approx(ref.intercept_[0], abs=1e-5)
    cal = fit_calibration(z, y, "platt", {"count": len(y), "list_sha256": SHA})
    assert np.allclose(calibrated_probability(z, cal), ref.predict_proba(z[:, None])[:, 1], atol=1e-6)
    m = Manifest.from_json(Manifest(name="m", calibration=cal).to_json()).calibration
    assert (m.method, m.temperature, m.bias) == ("platt", cal.temperature, cal.bias)


def test_isotonic_matches_scikit_learn_everywhere():
    z, y = overconfident(300, seed=1)
    p = 1 / (1 + np.exp(-z))
    kx, ky = fit_isotonic(p, y)
    ref = IsotonicRegression(out_of_bounds="clip").fit(p, y)
    grid = np.r_[np.linspace(0, 1, 2001), p]
    assert np.abs(np.interp(grid, kx, ky) - ref.predict(grid)).max() < 1e-12


def test_calibration_lowers_ece_and_keeps_auc():
    z_fit, y_fit = overconfident(seed=2)
    z, y = overconfident(seed=3)
    cal = fit_calibration(z_fit, y_fit, "temperature", {"count": len(y_fit), "list_sha256": SHA})
    m = calibration_metrics(z, y, cal)
    p_before, p_after = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(-z / cal.temperature))
    assert m["ece_before"] == pytest.approx(ece_by_hand(y, p_before), abs=1e-12)
    assert m["ece_after"] == pytest.approx(ece_by_hand(y, p_after), abs=1e-12)
    assert m["ece_after"] <= 0.5 * m["ece_before"]
    assert m["auc_after"] == pytest.approx(roc_auc_score(y, z), abs=1e-12) == m["auc_before"]
    iso = fit_calibration(z_fit, y_fit, "isotonic", {"count": len(y_fit), "list_sha256": SHA})
    m_iso = calibration_metrics(z, y, iso)
    assert m_iso["ece_after"] < m["ece_before"]
    assert m_iso["auc_after"] == pytest.approx(roc_auc_score(y, z), abs=1e-12)


def test_isotonic_calibration_is_strictly_increasing_and_close_to_the_step_fit():
    z_fit, y_fit = overconfident(300, seed=7)
    p_fit = 1 / (1 + np.exp(-z_fit))
    cal = fit_calibration(z_fit, y_fit, "isotonic", {"count": len(y_fit), "list_sha256": SHA})
    assert cal.x[0] == 0.0 and cal.x[-1] == 1.0 and np.all(np.diff(cal.y) > 0)
    ref = IsotonicRegression(out_of_bounds="clip").fit(p_fit, y_fit)
    grid = np.linspace(0, 1, 5001)
    out = np.interp(grid, cal.x, cal.y)
    assert np.all(np.diff(out) > 0)  # no two distinct scores tie, so the ranking is the raw one
    assert np.abs(out - ref.predict(grid)).max() <= 1e-3 + 1e-12
    z, y = overconfident(seed=8)
    step = np.interp(1 / (1 + np.exp(-z)), *fit_isotonic(p_fit, y_fit))
    assert roc_auc_score(y, step) != pytest.approx(roc_auc_score(y, z), abs=1e-6)  # the ties the blend removes


def test_operating_points_report_the_rates_measured_at_their_threshold():
    z, y = overconfident(1000, seed=4, scale=1.0)
    p = 1 / (1 + np.exp(-z))
    names = [f"img{i}.png" for i in range(len(y))]
    data = {"count": len(y), "list_sha256": list_sha256(names, y)}
    points = {pt.name: pt for pt in measure_operating_points(p, y, data)}
    assert set(points) == {"fpr-1%", "fpr-5%", "balanced"}
    for pt in points.values():
        called = p >= pt.threshold
        assert pt.tpr == pytest.approx(called[y == 1].mean(), abs=1e-12)
        assert pt.fpr == pytest.approx(called[y == 0].mean(), abs=1e-12)
    for name, target in (("fpr-1%", 0.01), ("fpr-5%", 0.05)):
        pt = points[name]
        assert pt.fpr <= target
        lower = p[p < pt.threshold].max()  # the next score down would break the target
        assert (p[y == 0] >= lower).mean() > target
    youden = max((p[y == 1] >= t).mean() - (p[y == 0] >= t).mean() for t in np.unique(p))
    assert points["balanced"].tpr - points["balanced"].fpr == pytest.approx(youden, abs=1e-12)
    assert points["fpr-1%"].data["list_sha256"] == list_sha256(names, y) != list_sha256(names[::-1], y[::-1])


def _manifest_dict(**over):
    return {"schema_version": 3, "name": "m", "input": {}, **over}


def test_manifest_round_trip_and_old_schemas():
    cal = {"method": "temperature", "temperature": 2.0, "data": {"count": 5, "list_sha256": SHA}}
    pts = [{"name": "fpr-1%", "threshold": 0.9, "tpr": 0.4, "fpr": 0.01, "data": {"count": 5, "list_sha256": SHA}}]
    m = Manifest.from_dict(_manifest_dict(calibration=cal, operating_points=pts))
    again = Manifest.from_json(m.to_json())
    assert again.calibration.temperature == 2.0 and again.operating_point("fpr-1%").threshold == 0.9
    assert again.to_dict()["schema_version"] == 3
    assert Manifest(name="plain").to_dict()["schema_version"] == 2  # no verdict: still readable by schema-2 readers
    with pytest.raises(ManifestError, match="calibration needs schema_version 3"):
        Manifest.from_dict(_manifest_dict(schema_version=2, calibration=cal))
    with pytest.raises(ManifestError, match="names repeat"):
        Manifest.from_dict(_manifest_dict(operating_points=pts * 2))
    with pytest.raises(ManifestError, match="non-decreasing"):
        Manifest.from_dict(_manifest_dict(calibration={**cal, "method": "isotonic", "x": [0.2, 0.1], "y": [0, 1]}))
    with pytest.raises(ManifestError, match="known: fpr-1%"):
        again.operating_point("fpr-2%")
    assert decision_threshold(again, None, "fpr-1%") == (0.9, "fpr-1%")
    assert decision_threshold(again, 0.3, None) == (0.3, None)
    with pytest.raises(FakedetError, match="not both"):
        decision_threshold(again, 0.3, "fpr-1%")


def test_no_calibration_is_the_plain_sigmoid():
    z = np.array([-800.0, -3.0, 0.0, 2.5, 800.0])
    from scipy.special import expit

    assert np.allclose(calibrated_probability(z, None), expit(z), rtol=1e-15, atol=0)
