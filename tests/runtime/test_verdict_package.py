"""Verdicts through the whole path: `eval --fit-calibration` writes a calibration and
operating points into a package; the runtime, `predict`, `info` and `serve` then report
calibrated P(fake) and decide at a named point. Figures recomputed here independently."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import minimize_scalar
from scipy.special import expit

from appliance_helpers import ServerProcess, build_brightness_package, request
from fakedet.cli import main
from fakedet.package import ModelPackage
from fakedet.runtime import Detector

TRUE_TEMPERATURE = 3.0


def _write_set(folder, values, logits, rng):
    """Flat images of the given brightness; labels drawn from sigmoid(logit / 3): the model
    is three times too confident."""
    folder.mkdir(parents=True)
    rows = []
    for i, (v, z) in enumerate(zip(values, logits)):
        path = folder / f"{i:03d}.png"
        Image.new("RGB", (32, 24), (int(v), int(v), int(v))).save(path)
        rows.append((path, int(rng.random() < expit(z / TRUE_TEMPERATURE))))
    with open(folder / "list.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows((p.name, y) for p, y in rows)
    return folder / "list.csv", rows


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verdict")
    pkg = build_brightness_package(tmp / "pkg")
    rng = np.random.default_rng(7)
    levels = np.arange(128, 256)
    with Detector.open(pkg, backend="ort-cpu") as det:
        logit_of = {int(v): p.logit for v, p in zip(levels, det.predict(
            [np.full((24, 32, 3), v, np.uint8) for v in levels]))}
    sets = {}
    for name in ("calib", "thresholds"):
        values = rng.choice(levels, 300)
        sets[name] = _write_set(tmp / name, values, [logit_of[int(v)] for v in values], rng)
    calibrated = tmp / "calibrated.fdet"
    code = main(["eval", str(pkg), "--data", str(sets["thresholds"][0]), "--fit-calibration", str(sets["calib"][0]),
                 "--out", str(tmp / "eval"), "--save-to", str(calibrated), "--backend", "ort-cpu", "--quiet"])
    assert code == 0
    return {"tmp": tmp, "raw": pkg, "pkg": calibrated, "sets": sets, "logit_of": logit_of}


def _labelled(rows, det):
    preds = det.predict([p for p, _ in rows])
    return np.array([p.logit for p in preds]), np.array([p.score for p in preds]), np.array([y for _, y in rows])


def test_the_fitted_temperature_is_the_reference_nll_minimiser(fitted):
    with Detector.open(fitted["raw"], backend="ort-cpu") as det:
        z, p_raw, y = _labelled(fitted["sets"]["calib"][1], det)
    assert np.allclose(p_raw, expit(z))  # the raw package: no calibration, plain sigmoid
    ref = minimize_scalar(lambda t: np.mean(np.logaddexp(0, z / t) - y * z / t), bounds=(0.05, 50),
                          method="bounded", options={"xatol": 1e-10}).x
    m = ModelPackage.open(fitted["pkg"]).manifest
    assert m.calibration.method == "temperature" and m.calibration.temperature == pytest.approx(ref, rel=1e-4)
    assert 1.5 < m.calibration.temperature < 6  # the labels were drawn 3x softer than the model
    assert m.schema_version == 3 and m.calibration.data["count"] == 300


def test_runtime_reports_calibrated_probabilities_and_the_report_shows_ece_drop(fitted):
    m = ModelPackage.open(fitted["pkg"]).manifest
    with Detector.open(fitted["pkg"], backend="ort-cpu") as det:
        z, p, y = _labelled(fitted["sets"]["thresholds"][1], det)
    assert np.allclose(p, expit(z / m.calibration.temperature), atol=1e-12)
    report = json.loads((fitted["tmp"] / "eval" / "calibration.json").read_text())
    held = report["held_out"]
    assert held["ece_after"] <= 0.5 * held["ece_before"] or held["ece_after"] <= 0.03
    assert held["auc_after"] == pytest.approx(held["auc_before"], abs=1e-12)
    assert (fitted["tmp"] / "eval" / "calibration.png").stat().st_size > 1000
    metrics = json.loads((fitted["tmp"] / "eval" / "metrics.json").read_text())
    assert metrics["overall"]["auc"] == pytest.approx(held["auc_before"], abs=1e-9)  # eval ran on the calibrated package


def test_operating_points_are_the_rates_measured_on_the_threshold_set(fitted):
    m = ModelPackage.open(fitted["pkg"]).manifest
    with Detector.open(fitted["pkg"], backend="ort-cpu") as det:
        _, p, y = _labelled(fitted["sets"]["thresholds"][1], det)
    assert [pt.name for pt in m.operating_points] == ["fpr-1%", "fpr-5%", "balanced"]
    for pt in m.operating_points:
        called = p >= pt.threshold
        assert pt.tpr == pytest.approx(called[y == 1].mean(), abs=1e-12)
        assert pt.fpr == pytest.approx(called[y == 0].mean(), abs=1e-12)
        assert pt.data["count"] == len(y) and pt.data["fake"] == int(y.sum())
    assert m.operating_point("fpr-1%").fpr <= 0.01 and m.operating_point("fpr-5%").fpr <= 0.05


def test_predict_and_info_use_the_named_point(fitted, capsys):
    pkg, rows = fitted["pkg"], fitted["sets"]["thresholds"][1]
    point = ModelPackage.open(pkg).manifest.operating_point("fpr-5%")
    paths = [str(p) for p, _ in rows[:40]]
    capsys.readouterr()
    assert main(["predict", str(pkg), *paths, "--json", "-q", "--operating-point", "fpr-5%", "--backend", "ort-cpu"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 40 and all(d["operating_point"] == "fpr-5%" for d in lines)
    assert all(d["is_fake"] == (d["score"] >= point.threshold) for d in lines)
    assert main(["predict", str(pkg), paths[0], "--json", "-q", "--backend", "ort-cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["operating_point"] is None
    assert main(["predict", str(pkg), paths[0], "--operating-point", "fpr-7%"]) == 2
    assert "operating point 'fpr-7%' is not in the package (known: fpr-1%, fpr-5%, balanced)" in capsys.readouterr().err
    assert main(["info", str(pkg), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "calibration  temperature" in out and f"op point     fpr-5%     threshold {point.threshold:.6g}" in out


def test_overlapping_calibration_and_threshold_sets_are_refused(fitted, capsys):
    calib = str(fitted["sets"]["calib"][0])
    code = main(["eval", str(fitted["raw"]), "--data", calib, "--fit-calibration", calib,
                 "--out", str(fitted["tmp"] / "same"), "--save-to", str(fitted["tmp"] / "same.fdet"), "--quiet"])
    assert code != 0 and "share 300 image(s)" in capsys.readouterr().err
    assert not (fitted["tmp"] / "same.fdet").exists()


def test_serve_answers_with_the_named_operating_point(fitted):
    pkg = fitted["pkg"]
    point = ModelPackage.open(pkg).manifest.operating_point("balanced")
    png = (fitted["sets"]["thresholds"][1][0][0]).read_bytes()
    with ServerProcess(pkg, fitted["tmp"] / "serve.log", "--operating-point", "balanced") as server:
        r = request(server.port, "POST", "/v1/detect", png, {"Content-Type": "application/octet-stream"})
        summary = request(server.port, "GET", "/v1/model").json()
    assert r.status == 200, r
    (res,) = r.json()["results"]
    assert res["operating_point"] == "balanced" and res["threshold"] == point.threshold
    assert res["decision"] == ("fake" if res["score"] >= point.threshold else "real")
    assert res["score"] == pytest.approx(expit(res["logit"] / ModelPackage.open(pkg).manifest.calibration.temperature))
    assert summary["threshold"]["operating_point"] == "balanced"
    assert [p["name"] for p in summary["verdict"]["operating_points"]] == ["fpr-1%", "fpr-5%", "balanced"]


def test_watch_decides_at_the_named_operating_point(fitted):
    pytest.importorskip("cv2")
    from appliance_helpers import write_video

    pkg, tmp = fitted["pkg"], fitted["tmp"]
    point = ModelPackage.open(pkg).manifest.operating_point("balanced")
    video = write_video(tmp / "clip.avi", [130 + 8 * i for i in range(16)])
    out = tmp / "watch.jsonl"
    assert main(["watch", str(pkg), "--source", str(video), "--every", "1", "--out", str(out), "-q",
                 "--operating-point", "balanced"]) == 0
    events = [json.loads(x) for x in out.read_text().splitlines()]
    frames = [e for e in events if e["event"] == "frame"]
    assert len(frames) == 16 and all(e["is_fake"] == (e["score"] >= point.threshold) for e in frames)
    assert 0 < sum(e["is_fake"] for e in frames) < 16  # the point splits this sweep of brightness
    assert events[-1]["event"] == "summary" and events[-1]["operating_point"] == "balanced"
