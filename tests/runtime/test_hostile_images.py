"""The hostile-image corpus through every surface that decodes uploads: Detector.predict,
score_blobs and `fakedet predict`. Every item gets its score or its error, the process
lives, good items keep the scores they get alone."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFile

from hostile_corpus import crafted_per_format, good_images, hostile_images
from fakedet.runtime import Detector
from fakedet.runtime.prediction import NON_FINITE
from fakedet.runtime.imageio import accepted_formats
from fakedet.runtime.serving import score_blobs


def _interleaved():
    good, bad = good_images(), hostile_images()
    items = []
    for i, item in enumerate(bad):
        items.append(item)
        if i % 20 == 0:
            items.append(good[(i // 20) % len(good)])
    return items, {name for name, _ in good}


def _alone(det, good):
    return {name: det.predict([blob])[0].score for name, blob in good}


def test_corpus_covers_every_format_pillow_opens():
    Image.init()
    per_format = crafted_per_format()
    assert set(per_format) == set(Image.OPEN)
    assert all(per_format[f] for f in Image.OPEN)
    assert "EPS" not in accepted_formats() and "DDS" not in accepted_formats()


def test_detector_and_score_blobs_survive_the_corpus(tiny_package):
    pkg, _ = tiny_package
    items, good_names = _interleaved()
    with Detector.open(pkg, backend="ort-cpu", batch_size=4) as det:
        alone = _alone(det, good_images())
        preds = det.predict([blob for _, blob in items])
        scores, fake, errors = score_blobs(det, [blob for _, blob in items])
    assert len(preds) == len(items) == len(scores)
    for (name, _), p, s, e in zip(items, preds, scores[:, 0], errors[:, 0]):
        assert (p.score is None) != (p.error is None), name  # its score or its error, never both or neither
        if name in good_names:
            assert p.ok and p.score == pytest.approx(alone[name], abs=1e-6), name
        if p.ok:
            assert np.isfinite(p.score) and s == pytest.approx(p.score, abs=1e-6) and e == b""
        else:
            assert np.isnan(s) and e.decode() == p.error
    refused = {name for (name, _), p in zip(items, preds) if not p.ok}
    assert {"dds-header.jpg", "blp.jpg", "tiff-rational-stripoffsets.tif", "postscript.jpg"} <= refused
    by_name = {name: p for (name, _), p in zip(items, preds)}
    assert "accepted format" in by_name["postscript.jpg"].error  # Ghostscript is never asked
    assert "decompression-bomb" in by_name["bomb-declared-30000x30000.png"].error


def test_any_exception_a_decoder_raises_costs_only_its_item(tiny_package, monkeypatch):
    class OddDecoderFailure(Exception):
        pass

    original = ImageFile.ImageFile.load

    def load(self):
        if self.size == (13, 13):
            raise OddDecoderFailure("the decoder fell over")
        if self.size == (14, 14):
            raise ArithmeticError()  # an empty message too
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    pkg, _ = tiny_package
    blobs = [_png(16), _png(13), _png(17), _png(14)]
    with Detector.open(pkg, backend="ort-cpu") as det:
        det.set_decode_budget(workers=0)  # decode in this process, where the patched loader is
        preds = det.predict(blobs)
    assert [p.ok for p in preds] == [True, False, True, False]
    assert "the decoder fell over" in preds[1].error and "ArithmeticError" in preds[3].error


def _png(side, value=None):
    import io

    arr = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    if value is not None:
        arr[:] = value
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_failing_inference_with_an_empty_message_costs_its_batch_only(tiny_package, monkeypatch):
    pkg, _ = tiny_package
    with Detector.open(pkg, backend="ort-cpu", batch_size=2) as det:
        real_infer = det.backend.infer
        calls = []

        def infer(batch):
            calls.append(len(batch))
            if len(calls) == 1:
                raise RuntimeError()  # str(e) == "": used to be an IndexError in Detector._score
            return real_infer(batch)

        monkeypatch.setattr(det.backend, "infer", infer)
        preds = det.predict([_png(16), _png(17), _png(18)])
    assert [p.ok for p in preds] == [False, False, True]
    assert preds[0].error == "inference failed: RuntimeError"


def _nan_model_package(tmp_path):
    """logit = log(mean of the normalised image): NaN for dark images, finite for bright ones."""
    import onnx
    from onnx import TensorProto as T, helper as h

    from conftest import write_spec
    from fakedet.cli import main

    nodes = [h.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
             h.make_node("Log", ["m"], ["lg"]), h.make_node("Unsqueeze", ["lg", "ax"], ["output"])]  # fmt: skip
    g = h.make_graph(nodes, "nan", [h.make_tensor_value_info("input", T.FLOAT, ["N", 3, 16, 16])],
                     [h.make_tensor_value_info("output", T.FLOAT, ["N", 1])],
                     [onnx.numpy_helper.from_array(np.array([1], np.int64), "ax")])  # fmt: skip
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "nan.onnx"))
    spec = write_spec(tmp_path / "spec.json")
    assert main(["package", str(tmp_path / "nan.onnx"), "--input-spec", str(spec), "-o", str(tmp_path / "nan.fdet")]) == 0
    return tmp_path / "nan.fdet"


def test_non_finite_scores_are_errors_and_json_stays_json(tmp_path):
    pkg = _nan_model_package(tmp_path)
    bright, dark = tmp_path / "bright.png", tmp_path / "dark.png"
    bright.write_bytes(_png(16, 250))
    dark.write_bytes(_png(16, 10))
    with Detector.open(pkg, backend="ort-cpu") as det:
        b, d = det.predict([bright, dark])
    assert b.ok and np.isfinite(b.score)
    assert d.error == NON_FINITE and d.score is None and d.is_fake is None
    r = subprocess.run([sys.executable, "-m", "fakedet", "predict", str(pkg), str(bright), str(dark), "--json"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1, r.stderr
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON output")) for line in r.stdout.splitlines()]
    assert [row["error"] for row in rows] == [None, NON_FINITE]


def test_predict_command_lives_through_the_corpus(tmp_path, tiny_package):
    pkg, _ = tiny_package
    items, good_names = _interleaved()
    folder = tmp_path / "uploads"
    folder.mkdir()
    paths = []
    for i, (name, blob) in enumerate(items):
        p = folder / f"{i:03d}-{name}"
        p.write_bytes(blob)
        paths.append(p)
    with Detector.open(pkg, backend="ort-cpu") as det:
        alone = _alone(det, good_images())
    r = subprocess.run([sys.executable, "-m", "fakedet", "predict", str(pkg), *map(str, paths), "--json", "--batch", "4"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["path"] for row in rows] == [str(p) for p in paths]
    for (name, _), row in zip(items, rows):
        assert (row["score"] is None) != (row["error"] is None), name
        if name in good_names:
            assert row["score"] == pytest.approx(alone[name], abs=1e-6)
