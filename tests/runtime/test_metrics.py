"""runtime.metrics against scikit-learn and brute-force counting, with and without ties."""

import itertools

import numpy as np
import pytest
from sklearn import metrics as skm

from fakedet.runtime import metrics


def _cases():
    rng = np.random.default_rng(0)
    for n, levels in [(7, None), (50, None), (40, 4), (200, 10), (9, 2)]:
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        s = rng.normal(size=n) + y if levels is None else rng.integers(0, levels, n).astype(float)
        yield y, s


CASES = list(_cases())


def brute_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("y,s", CASES)
def test_roc_auc_matches_sklearn_and_pair_counting(y, s):
    got = metrics.roc_auc(y, s)
    assert got == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert got == pytest.approx(brute_auc(y, s), abs=1e-12)


@pytest.mark.parametrize("y,s", CASES)
def test_average_precision_matches_sklearn(y, s):
    assert metrics.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("y,s", CASES)
def test_roc_curve_matches_sklearn(y, s):
    fpr, tpr, thr = metrics.roc_curve(y, s)
    efpr, etpr, ethr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, efpr)
    np.testing.assert_allclose(tpr, etpr)
    np.testing.assert_array_equal(thr[1:], ethr[1:])
    assert np.isinf(thr[0])


@pytest.mark.parametrize("y,s", CASES)
def test_accuracy_at_matches_explicit_loop(y, s):
    t = float(np.median(s))
    got = metrics.accuracy_at(y, s, t)
    real_ok = [si < t for yi, si in zip(y, s) if yi == 0]
    fake_ok = [si >= t for yi, si in zip(y, s) if yi == 1]
    assert got["real_accuracy"] == pytest.approx(sum(real_ok) / len(real_ok))
    assert got["fake_accuracy"] == pytest.approx(sum(fake_ok) / len(fake_ok))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, (s >= t).astype(int)))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, (s >= t).astype(int)))


@pytest.mark.parametrize("y,s", CASES)
@pytest.mark.parametrize("target", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_threshold_for_fpr_is_lowest_meeting_target(y, s, target):
    t = metrics.threshold_for_fpr(y, s, target)
    fpr_at = lambda thr: np.mean(s[y == 0] >= thr)  # noqa: E731
    assert fpr_at(t) <= target + 1e-12
    # brute force: no lower candidate (a score value) meets the target
    better = [c for c in np.unique(s) if c < t and fpr_at(c) <= target + 1e-12]
    assert not better


def test_all_ties_gives_half_auc():
    y = np.array([0, 1, 0, 1])
    s = np.ones(4)
    assert metrics.roc_auc(y, s) == 0.5
    assert metrics.average_precision(y, s) == 0.5


def test_threshold_above_everything_when_top_score_is_real():
    y = np.array([0, 1, 1])
    s = np.array([0.9, 0.2, 0.3])
    t = metrics.threshold_for_fpr(y, s, 0.0)
    assert t > 0.9 and metrics.accuracy_at(y, s, t)["real_accuracy"] == 1.0


@pytest.mark.parametrize(
    "y,s",
    [([0, 0], [0.1, 0.2]), ([0, 1, 2], [0.1, 0.2, 0.3]), ([0, 1], [0.1, np.nan]), ([0, 1], [0.1])],
)
def test_bad_input_raises(y, s):
    with pytest.raises(ValueError):
        metrics.roc_auc(y, s)


def test_runtime_metrics_does_not_import_torch_or_sklearn():
    import subprocess
    import sys

    code = "import sys, fakedet.runtime.metrics; assert not {'torch','sklearn'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_expected_calibration_error_against_per_image_binning():
    from fakedet.runtime.metrics import expected_calibration_error

    rng = np.random.default_rng(3)
    probs = rng.uniform(0, 1, 500)
    labels = (rng.uniform(0, 1, 500) < probs ** 2).astype(float)  # over-confident on fakes
    bins = {}
    for p, y in zip(probs, labels):
        bins.setdefault(min(int(p * 10), 9), []).append((p, y))
    want = sum(len(v) / len(probs) * abs(np.mean([y for _, y in v]) - np.mean([p for p, _ in v])) for v in bins.values())
    assert expected_calibration_error(labels, probs) == pytest.approx(want, abs=1e-12)
    assert expected_calibration_error(np.ones(4), np.ones(4)) == 0.0  # confident and right
