"""Memory proportional to the model (finding 3 of the hostile-client review): the input
tensor is built with one float32 copy, a whole-image model's memory goes back after a
large image, and the largest image follows from a memory budget, refused with both
figures named."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import build_tiny_onnx, write_spec
from fakedet.cli import main
from fakedet.manifest import InputSpec, Preprocess
from fakedet.runtime.preprocess import normalize


@pytest.fixture(scope="module")
def whole_image_package(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whole")
    build_tiny_onnx(tmp / "dyn.onnx", dynamic_hw=True)
    spec = write_spec(tmp / "spec.json", input={"name": "input", "mean": [0.5] * 3, "std": [0.25] * 3,
                                                "preprocess": {"policy": "whole-image", "size": None}})
    pkg = tmp / "whole.fdet"
    assert main(["package", str(tmp / "dyn.onnx"), "--input-spec", str(spec), "-o", str(pkg)]) == 0
    return pkg


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_normalize_in_place_matches_the_textbook_formula(order, layout):
    arr = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    spec = InputSpec(mean=mean, std=std, channel_order=order, layout=layout,
                     preprocess=Preprocess(policy="whole-image", size=None))
    ref = (arr.astype(np.float32) / np.float32(255) - np.float32(mean)) / np.float32(std)
    ref = ref[..., ::-1] if order == "BGR" else ref
    ref = ref.transpose(2, 0, 1) if layout == "NCHW" else ref
    got = normalize(arr, spec)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got, ref)  # bit for bit


MEASURE = """
import json, sys
from fakedet.runtime import Detector
from fakedet.runtime.memory_budget import resident_bytes
pkg, big, small = sys.argv[1:4]
with Detector.open(pkg, backend="ort-cpu", threads=1) as det:
    det.predict([small, small])
    before = resident_bytes()
    ok = det.predict([big])[0].ok
    det.predict([small])
    after = resident_bytes()
print(json.dumps({"ok": ok, "before": before, "after": after}))
"""


def test_memory_goes_back_after_a_large_image(whole_image_package, tmp_path):
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("RGB", (2500, 2500), (90, 120, 150)).save(big)  # a 75 MB float tensor; ~0.5 GB of activations
    Image.new("RGB", (64, 64), (90, 120, 150)).save(small)
    r = subprocess.run([sys.executable, "-c", MEASURE, str(whole_image_package), str(big), str(small)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ok"]
    assert out["after"] <= 1.10 * out["before"] + 16e6, out  # 16 MB: what the allocator keeps of its heap


def test_the_memory_budget_sets_the_pixel_limit_and_says_so(whole_image_package, tmp_path):
    from fakedet.runtime import Detector
    from fakedet.runtime.memory_budget import resident_bytes

    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("RGB", (2000, 2000), (90, 120, 150)).save(big)
    Image.new("RGB", (200, 200), (90, 120, 150)).save(small)
    with Detector.open(whole_image_package, backend="ort-cpu") as det:
        budget = resident_bytes() + 100_000_000
        limit = det.set_memory_budget(budget, "--max-memory")
        assert 40_000 < limit < 4_000_000
        preds = det.predict([big, small])
    assert preds[1].ok
    err = preds[0].error
    assert f"exceeds the limit of {limit}" in err and "--max-memory" in err and "bytes per pixel" in err
    r = subprocess.run([sys.executable, "-m", "fakedet", "predict", str(whole_image_package), str(big),
                        "--max-memory", "1MB"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "--max-memory 1 MB" in r.stdout, r.stdout + r.stderr
