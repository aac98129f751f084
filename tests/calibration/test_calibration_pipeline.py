"""`fakedet calibrate` end to end on tiny models: fallback on a built-in sensitive layer,
stale-cache keying, the bare-ONNX route and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from PIL import Image  # noqa: E402

from fakedet.calibration.pipeline import Options, calibrate  # noqa: E402
from fakedet.calibration.tensorrt_cache import parse_cache  # noqa: E402
from fakedet.cli import main  # noqa: E402
from fakedet.errors import DataError  # noqa: E402
from fakedet.manifest import InputSpec, Manifest, OutputSpec, Preprocess  # noqa: E402
from fakedet.package import ModelPackage, PackageWriter  # noqa: E402
from test_calibration_units import save_two_conv_net  # noqa: E402

SPEC = InputSpec(name="x", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                 preprocess=Preprocess(policy="resize", size=(16, 16)))  # fmt: skip


def outlier_net(path: Path):
    """Channel 0 of convA fires only on pure-red pixels, with a value ~1000 (a rare outlier
    in calibration data); channels 1-3 carry the real/fake signal (brightness) at ~1. With
    min-max ranges the shared INT8 scale of relu(convA) rounds the signal to 0."""
    from onnx import numpy_helper as nh

    wA = np.zeros((4, 3, 1, 1), np.float32)
    bA = np.zeros(4, np.float32)
    wA[0, 0, 0, 0], bA[0] = 1e5, -0.99e5  # 1e5 * (red - 0.99)
    wA[1:, :, 0, 0] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    wB = np.zeros((2, 4, 1, 1), np.float32)
    wB[0, 1:, 0, 0] = 1.0
    wB[1, 1:, 0, 0] = 0.5
    wF = np.array([[4.0, 2.0]], np.float32)
    inits = [nh.from_array(a, n) for n, a in (("wA", wA), ("bA", bA), ("wB", wB), ("bB", np.zeros(2, np.float32)),
                                               ("wF", wF), ("bF", np.array([-6.0], np.float32)))]  # fmt: skip
    save_two_conv_net(path, inits, "outlier")


def write_images(root: Path, n_real: int, n_fake: int, seed: int, red_outlier: bool = False, gen: str = ""):
    rng = np.random.default_rng(seed)
    for label, n, level in (("0_real", n_real, 0.3), ("1_fake", n_fake, 0.55)):
        d = root / gen / label
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.clip(rng.normal(level, 0.12, (16, 16, 3)) + rng.normal(0, 0.1), 0, 0.97)
            img = (arr * 255).astype(np.uint8)
            if red_outlier and label == "1_fake" and i == 0:
                img[3, 3] = (255, 0, 0)
            Image.fromarray(img).save(d / f"{seed}_{i}.png")


@pytest.fixture
def setup(tmp_path):
    outlier_net(tmp_path / "net.onnx")
    manifest = Manifest(name="outlier", input=SPEC, output=OutputSpec(name="logit"))
    with PackageWriter(tmp_path / "det.fdet", manifest) as w:
        w.add_file(tmp_path / "net.onnx", "model.onnx", "onnx-fp32")
    write_images(tmp_path / "calib", 8, 8, seed=1, red_outlier=True, gen="sd14")
    write_images(tmp_path / "heldout", 16, 16, seed=2)
    return tmp_path


def test_fallback_keeps_the_sensitive_layer_in_float_and_names_it(setup):
    t = setup
    res = calibrate(t / "det.fdet", Options(data=t / "calib", method="minmax", samples=16, eval_data=t / "heldout",
                                            max_auc_drop=0.01, progress=False))  # fmt: skip
    g = res.report["guard"]
    assert g["initial"]["auc_drop"] > 0.2  # INT8 as calibrated is ruined by the outlier
    assert g["passed"] and g["final"]["auc_drop"] <= 0.01
    assert res.report["kept_float"] and res.report["kept_float"][0] in ("convA", "convB")
    assert len(res.report["kept_float"]) == 1
    ranked = [r["name"] for r in g["sensitivity"]]
    assert set(ranked[:2]) == {"convA", "convB"} and set(ranked[2:]) == {"gap", "fc"}

    pkg = ModelPackage.open(t / "det.fdet")
    pkg.verify()
    kinds = {a.kind for a in pkg.manifest.artifacts}
    assert {"onnx-fp32", "onnx-int8-qdq", "trt-calibration-cache", "calibration-report"} <= kinds
    rep = json.loads((pkg.root / "calibration.json").read_text())
    assert rep["kept_float"] == res.report["kept_float"] and rep["data_digest"] == res.report["data_digest"]
    assert (pkg.root / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    int8 = pkg.manifest.artifact("onnx-int8-qdq")
    for k in ("model_sha256", "data_digest", "method", "samples", "per_channel"):
        assert k in int8.attrs
    # the cache holds the FP32 tensor names, less those of the layer kept in float
    header, scales = parse_cache((pkg.root / "calibration.cache").read_text())
    assert header == "TRT-100300-EntropyCalibration2"
    assert "x" in scales and scales["x"] == pytest.approx(rep["ranges"]["x"] / 127, rel=1e-6)
    assert set(rep["trt_cache"]["omitted_float_tensors"]) & {"ar", "br"}
    assert not set(rep["trt_cache"]["omitted_float_tensors"]) & set(scales)

    # the runtime runs the INT8 model and its scores follow FP32
    from fakedet.runtime import Detector

    imgs = sorted((t / "heldout").rglob("*.png"))
    with Detector.open(t / "det.fdet", precision="int8") as d8, Detector.open(t / "det.fdet", precision="fp32") as d32:
        p8 = np.array([p.score for p in d8.predict(imgs)])
        p32 = np.array([p.score for p in d32.predict(imgs)])
    assert np.abs(p8 - p32).max() < 0.05


def test_keying_reuses_identical_runs_and_recalibrates_on_change(setup, capsys):
    t = setup
    args = ["calibrate", str(t / "det.fdet"), "--data", str(t / "calib"), "--method", "minmax", "--samples", "16",
            "--eval-data", str(t / "heldout"), "--max-auc-drop", "0.01", "-q"]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "calibrated" in first and "kept in float" in first
    key1 = ModelPackage.open(t / "det.fdet").manifest.artifact("onnx-int8-qdq").attrs["calibration_key"]

    assert main(args) == 0
    assert "reusing calibration" in capsys.readouterr().out

    write_images(t / "calib", 1, 0, seed=9, gen="sd14")  # the data changed
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "reusing" not in out and "calibrated" in out
    key2 = ModelPackage.open(t / "det.fdet").manifest.artifact("onnx-int8-qdq").attrs["calibration_key"]
    assert key2 != key1

    assert main(args + ["--per-tensor"]) == 0  # an option changed: ranges reused, result redone
    out = capsys.readouterr().out
    assert "calibrated" in out and "reusing calibration ranges" in out


def test_bare_onnx_with_input_spec_becomes_a_package(setup):
    t = setup
    spec = {"input": SPEC.to_dict(), "output": {"name": "logit", "kind": "logit"}, "threshold": 0.5}
    (t / "spec.json").write_text(json.dumps(spec))
    res = calibrate(t / "net.onnx", Options(data=t / "calib", method="percentile", samples=16, progress=False),
                    input_spec=t / "spec.json", out=t / "wrapped.fdet")  # fmt: skip
    pkg = ModelPackage.open(res.dest)
    pkg.verify()
    assert {a.kind for a in pkg.manifest.artifacts} >= {"onnx-fp32", "onnx-int8-qdq", "trt-calibration-cache"}
    assert res.report["guard"]["skipped"]


def test_bad_data_fails_before_any_work(setup, caplog):
    t = setup
    (t / "empty").mkdir()
    with pytest.raises(DataError):
        calibrate(t / "det.fdet", Options(data=t / "empty", progress=False))
    write_images(t / "onlyreal", 4, 0, seed=3)
    (t / "onlyreal" / "1_fake").rmdir()
    with pytest.raises(DataError, match="only real"):
        calibrate(t / "det.fdet", Options(data=t / "calib", eval_data=t / "onlyreal", progress=False))
    assert main(["calibrate", str(t / "det.fdet"), "--data", str(t / "empty"), "-q"]) == 2
    # fewer than asked: used, with a warning
    with caplog.at_level("WARNING", logger="fakedet.calibration"):
        res = calibrate(t / "det.fdet", Options(data=t / "calib", method="minmax", samples=500, progress=False))
    assert res.report["samples"] == 16 and "fewer than the 500 asked" in caplog.text
