"""INT8 artifacts keep the evidence output; the guard reports how far the INT8 map moves."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
import onnxruntime as ort  # noqa: E402



def _images(root, n, seed):
    rng = np.random.default_rng(seed)
    for label, level in (("0_real", 90), ("1_fake", 150)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(rng.normal(level, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / label / f"{i}.png")


def test_int8_artifacts_carry_the_map_and_the_guard_measures_it(tmp_path, evidence_packages):
    import shutil

    from fakedet.calibration.pipeline import Options, calibrate
    from fakedet.runtime.detector import Detector
    from fakedet.runtime.scoring import sigmoid

    pkg = shutil.copytree(evidence_packages[0], tmp_path / "tiny.fdet")
    _images(tmp_path / "calib", 8, 1)
    _images(tmp_path / "held", 8, 2)
    calibrate(pkg, Options(data=tmp_path / "calib", eval_data=tmp_path / "held", method="minmax", samples=16,
                           progress=False, cpu_bench_seconds=0, max_auc_drop=1.0))
    rep = json.loads((pkg / "calibration.json").read_text())
    for file, art in rep["artifacts"].items():
        ev = art["guard"]["evidence_map"]
        assert ev["images"] == 16 and ev["regions"] == 16 * 36
        sess8 = ort.InferenceSession(str(pkg / file), providers=["CPUExecutionProvider"])
        assert [o.name for o in sess8.get_outputs()] == ["logit", "evidence"]
    # independent check of the figure for the ORT CPU artifact, on the held-out images
    from fakedet.runtime.preprocess import preprocess

    with Detector.open(pkg, backend="ort-cpu", precision="fp32") as d32:
        spec = d32.manifest.input
    x = np.stack([preprocess(p, spec) for p in sorted((tmp_path / "held").rglob("*.png"))])
    s32 = ort.InferenceSession(str(pkg / "model.onnx"), providers=["CPUExecutionProvider"])
    cpu_file = next(f for f, a in rep["artifacts"].items() if a["guard"]["arithmetic"].startswith("onnxruntime"))
    s8 = ort.InferenceSession(str(pkg / cpu_file), providers=["CPUExecutionProvider"])
    dp = np.abs(sigmoid(s8.run(["evidence"], {"image": x})[0]) - sigmoid(s32.run(["evidence"], {"image": x})[0]))
    got = rep["artifacts"][cpu_file]["guard"]["evidence_map"]
    assert got["max_abs_dp"] == pytest.approx(float(dp.max()), abs=1e-6)
    assert got["mean_abs_dp"] == pytest.approx(float(dp.mean()), abs=1e-6)
    with Detector.open(pkg, backend="ort-cpu", precision="int8") as d8:
        assert d8.explainer().source == "exported"
        (p,) = d8.predict([sorted((tmp_path / "held").rglob("*.png"))[0]], explain=True)
        assert p.ok and p.evidence.logits.shape == (6, 6)


def test_a_map_over_its_budget_engages_the_fallback_on_its_own(tmp_path, evidence_packages):
    import shutil

    from fakedet.calibration.pipeline import Options, calibrate

    _images(tmp_path / "calib", 8, 1)
    _images(tmp_path / "held", 8, 2)

    def run(name, **budget):
        pkg = shutil.copytree(evidence_packages[0], tmp_path / name)
        calibrate(pkg, Options(data=tmp_path / "calib", eval_data=tmp_path / "held", method="minmax", samples=16,
                               progress=False, cpu_bench_seconds=0, max_auc_drop=1.0, max_score_shift=1.0,
                               max_float_layers=20, **budget))
        rep = json.loads((pkg / "calibration.json").read_text())
        return {a["guard"]["arithmetic"]: a["guard"] for a in rep["artifacts"].values()}

    loose = run("loose.fdet", max_map_shift=1.0)
    for g in loose.values():  # AUC and score budgets wide open, the map within 1.0: INT8 as it is
        assert g["kept_float"] == [] and g["steps"] == [] and g["final"]["map_shift"] > 0
    start = min(g["final"]["map_shift"] for g in loose.values())
    tight = run("tight.fdet", max_map_shift=start / 2)
    for kind, g in tight.items():
        assert g["initial"]["map_shift"] == pytest.approx(loose[kind]["final"]["map_shift"], rel=1e-6)
        assert g["kept_float"], kind  # the map alone made it keep layers in float
        assert g["shift_passed"] and g["final"]["map_shift"] <= start / 2
        assert g["evidence_map"]["mean_abs_dp"] == pytest.approx(g["final"]["map_shift"], rel=1e-6)
        assert [s["map_shift"] for s in g["steps"]][-1] == pytest.approx(g["final"]["map_shift"])
