"""Detector.predict against an independent numpy computation of the same network."""

import io

import numpy as np
import pytest
from PIL import Image

from conftest import build_tiny_onnx, reference_forward, save_image, write_spec
from fakedet.cli import main
from fakedet.runtime import Detector


def _ref_input(arr_rgb: np.ndarray, mean, std, crop=16):
    """Centre-crop + normalise written independently of the runtime."""
    h, w = arr_rgb.shape[:2]
    top, left = int(round((h - crop) / 2)), int(round((w - crop) / 2))
    c = arr_rgb[top : top + crop, left : left + crop].astype(np.float64) / 255.0
    c = (c - np.array(mean)) / np.array(std)
    return c.transpose(2, 0, 1)[None]


def test_scores_match_numpy_reference(tmp_path, tiny_package):
    pkg, w = tiny_package
    paths = [save_image(tmp_path / f"img{i}.png", size=(20 + i, 18 + 2 * i), seed=i) for i in range(7)]
    with Detector.open(pkg, backend="ort-cpu", batch_size=3) as det:
        preds = det.predict(paths)
    for p, path in zip(preds, paths):
        arr = np.asarray(Image.open(path).convert("RGB"))
        logit = reference_forward(_ref_input(arr, [0.5] * 3, [0.25] * 3), w)[0, 0]
        assert p.error is None
        assert p.logit == pytest.approx(logit, abs=1e-4)
        assert p.score == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-5)
        assert p.is_fake == (p.score >= 0.5)


def test_two_class_output_and_threshold(tmp_path):
    onnx_path = tmp_path / "two.onnx"
    w = build_tiny_onnx(onnx_path, two_class=True, seed=3)
    spec = write_spec(tmp_path / "spec.json", output={"name": "output", "kind": "two-class-logits", "fake_index": 0})
    out = tmp_path / "two.fdet"
    assert main(["package", str(onnx_path), "--input-spec", str(spec), "-o", str(out), "--threshold", "0.3"]) == 0
    img = save_image(tmp_path / "a.png", size=(16, 16), seed=5)
    with Detector.open(out) as det:
        (p,) = det.predict([img])
        assert det.threshold == 0.3
    arr = np.asarray(Image.open(img).convert("RGB"))
    logits = reference_forward(_ref_input(arr, [0.5] * 3, [0.25] * 3), w)[0]
    softmax_fake = np.exp(logits[0]) / np.exp(logits).sum()
    assert p.score == pytest.approx(softmax_fake, abs=1e-5)
    assert p.is_fake == (softmax_fake >= 0.3)


def test_mixed_sources_and_bad_items(tmp_path, tiny_package):
    pkg, _ = tiny_package
    good = save_image(tmp_path / "good.png", seed=1)
    buf = io.BytesIO()
    Image.open(good).save(buf, "PNG")
    arr = np.asarray(Image.open(good).convert("RGB"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    with Detector.open(pkg) as det:
        preds = det.predict([good, buf.getvalue(), arr, bad, b""])
    assert [p.ok for p in preds] == [True, True, True, False, False]
    assert preds[0].score == pytest.approx(preds[1].score) == pytest.approx(preds[2].score)
    assert "bad.jpg" in preds[3].source


def test_fixed_batch_model_pads_last_batch(tmp_path):
    onnx_path = tmp_path / "fixed.onnx"
    w = build_tiny_onnx(onnx_path, fixed_batch=4)
    spec = write_spec(tmp_path / "spec.json")
    out = tmp_path / "fixed.fdet"
    assert main(["package", str(onnx_path), "--input-spec", str(spec), "-o", str(out)]) == 0
    imgs = [np.full((16, 16, 3), 30 * i, np.uint8) for i in range(6)]
    with Detector.open(out, batch_size=32) as det:
        preds = det.predict(imgs)
    for p, im in zip(preds, imgs):
        ref = reference_forward(_ref_input(im, [0.5] * 3, [0.25] * 3), w)[0, 0]
        assert p.logit == pytest.approx(ref, abs=1e-4)


def test_whole_image_model_groups_by_shape(tmp_path):
    onnx_path = tmp_path / "dyn.onnx"
    w = build_tiny_onnx(onnx_path, dynamic_hw=True)
    spec = write_spec(
        tmp_path / "spec.json",
        input={"name": "input", "mean": [0.5] * 3, "std": [0.25] * 3, "preprocess": {"policy": "whole-image", "size": None}},
    )
    out = tmp_path / "dyn.fdet"
    assert main(["package", str(onnx_path), "--input-spec", str(spec), "-o", str(out)]) == 0
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, wd, 3), dtype=np.uint8) for h, wd in [(20, 30), (17, 17), (20, 30), (33, 9)]]
    with Detector.open(out) as det:
        preds = det.predict(imgs)
    for p, im in zip(preds, imgs):
        x = ((im.astype(np.float64) / 255 - 0.5) / 0.25).transpose(2, 0, 1)[None]
        assert p.logit == pytest.approx(reference_forward(x, w)[0, 0], abs=1e-4)
