"""`fakedet eval --fit-calibration`: fit a probability calibration on one held-out labelled
set, measure named operating points on another (the threshold set, --data), write both into
the package's manifest, and report ECE and a reliability diagram before and after
(calibration.json, calibration.png)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fakedet.atomic import atomic_output, atomic_write_text
from fakedet.errors import DataError, FakedetError
from fakedet.package import ModelPackage, PackageWriter
from fakedet.runtime.dataset_index import Sample
from fakedet.runtime.reliability_plot import draw_reliability
from fakedet.runtime.scoring import sigmoid
from fakedet.runtime.verdict import calibrated_probability
from fakedet.runtime.verdict_fit import (
    calibration_metrics, fit_calibration, list_sha256, measure_operating_points,
)

from .eval import CLEAN, PackageScorer, Scorer, score_samples


class _LogitScorer(Scorer):
    """A package scorer that returns the model's raw logits (the calibration is fitted on them)."""

    def __init__(self, scorer: PackageScorer):
        self.input_spec, self.captions, self.detector = scorer.input_spec, scorer.captions, scorer.detector

    def score(self, batch, captions=None):
        return self.detector.logits_tensors(batch, captions)


def labelled_logits(scorer: PackageScorer, samples: list[Sample], batch: int, progress: bool, source: str):
    """(logits, labels, data record) of the samples that decode; the record names the list."""
    run = score_samples(_LogitScorer(scorer), samples, CLEAN, batch, progress)
    idx = sorted(run.scores)
    labels = np.array([samples[i].label for i in idx], np.int64)
    if not idx or labels.min() == labels.max():
        raise DataError(f"{source}: both real and fake images must decode to fit or measure a verdict")
    names = [samples[i].path.as_posix() for i in idx]
    data = {"count": len(idx), "real": int((labels == 0).sum()), "fake": int((labels == 1).sum()),
            "list_sha256": list_sha256(names, labels), "source": str(source)[:200]}
    return np.array([run.scores[i] for i in idx], np.float64), labels, data


def check_disjoint(calibration: list[Sample], thresholds: list[Sample]) -> None:
    shared = {s.path.resolve() for s in calibration} & {s.path.resolve() for s in thresholds}
    if shared:
        raise DataError(f"the calibration set and the threshold set (--data) share {len(shared)} image(s), e.g. "
                        f"{sorted(shared)[0].name}: fit and measure on separate held-out sets")


def reliability_figure(path: Path, labels, before, after, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 1, figsize=(4.6, 4.4))
    draw_reliability(ax, labels, {"before (sigmoid of logit)": before, "after (calibrated)": after}, title=title)
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def fit_verdict(package: str | Path, calibration_samples: list[Sample], threshold_samples: list[Sample], out: str | Path,
                method: str = "temperature", backend: str = "auto", precision: str = "auto", batch: int = 16,
                progress: bool = False, calibration_source: str = "", threshold_source: str = "",
                save_to: str | Path | None = None) -> dict:
    """Fit, measure, write the package (in place, or to `save_to`) and calibration.json /
    calibration.png in `out`. Returns calibration.json's content."""
    check_disjoint(calibration_samples, threshold_samples)
    package, out = Path(package), Path(out)
    scorer = PackageScorer(package, backend, precision)
    try:
        z_cal, y_cal, cal_data = labelled_logits(scorer, calibration_samples, batch, progress, calibration_source)
        z_thr, y_thr, thr_data = labelled_logits(scorer, threshold_samples, batch, progress, threshold_source)
    finally:
        scorer.close()
    cal = fit_calibration(z_cal, y_cal, method, cal_data)
    measured = calibration_metrics(z_thr, y_thr, cal)
    cal.metrics = {"measured_on": thr_data, **measured}
    probs = calibrated_probability(z_thr, cal)
    points = measure_operating_points(probs, y_thr, thr_data)
    report = {"calibration": cal.to_dict(), "fitted_on": cal_data, "held_out": measured,
              "operating_points": [p.to_dict() for p in points],
              "files": {"reliability": "calibration.png"}}
    _write_package(package, save_to or package, cal, points)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{method}: ECE {measured['ece_before']:.3f} -> {measured['ece_after']:.3f}"
    reliability_figure(out / "calibration.png", y_thr, sigmoid(z_thr), probs, title)
    atomic_write_text(out / "calibration.json", json.dumps(report, indent=2) + "\n")
    return report


def _write_package(source: Path, dest: Path, cal, points) -> None:
    """The manifest with the calibration and points; its decision threshold moved onto the
    calibrated scale (same decisions: the map is monotone)."""
    pkg = ModelPackage.open(source)
    try:
        if dest == source and not source.is_dir():
            raise FakedetError(f"{source}: only a package directory is updated in place; give --save-to NAME.fdet")
        m = pkg.manifest.copy()
        raw = m.threshold.value
        if m.calibration is not None:
            raw = float(m.threshold.details.get("uncalibrated_value", raw))
        z = float(np.log(max(raw, 1e-12)) - np.log(max(1.0 - raw, 1e-12)))
        m.threshold.value = float(np.clip(calibrated_probability(np.array([z]), cal)[0], 0.0, 1.0))
        m.threshold.details = {**m.threshold.details, "uncalibrated_value": raw}
        m.calibration, m.operating_points = cal, points
        with PackageWriter(dest, m, base=pkg):
            pass
    finally:
        pkg.close()
