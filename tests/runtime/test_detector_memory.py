"""Detector.predict decodes, preprocesses and scores in batch-sized windows: a whole-image
package's peak memory depends on the batch size, not on how many images a caller passes."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import build_tiny_onnx, write_spec
from fakedet.cli import main

MEASURE = """
import json, resource, sys
from fakedet.runtime import Detector
pkg, img, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Detector.open(pkg, backend="ort-cpu", batch_size=8, threads=1) as det:
    det.predict([img] * 8)  # warm-up: sessions, arenas and imports count in both runs
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    preds = det.predict([img] * n)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ok": sum(p.ok for p in preds), "base_kb": base, "peak_kb": peak}))
"""


def _peak(pkg, img, n):
    r = subprocess.run([sys.executable, "-c", MEASURE, str(pkg), str(img), str(n)], capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ok"] == n
    return out["peak_kb"]


def test_whole_image_peak_memory_follows_the_batch_not_the_item_count(tmp_path):
    build_tiny_onnx(tmp_path / "dyn.onnx", dynamic_hw=True)
    spec = write_spec(tmp_path / "spec.json", input={"name": "input", "mean": [0.5] * 3, "std": [0.25] * 3,
                                                     "preprocess": {"policy": "whole-image", "size": None}})  # fmt: skip
    pkg = tmp_path / "whole.fdet"
    assert main(["package", str(tmp_path / "dyn.onnx"), "--input-spec", str(spec), "-o", str(pkg)]) == 0
    img = tmp_path / "megapixel.png"
    yy, xx = np.mgrid[0:1000, 0:1000]
    Image.fromarray(np.stack([yy % 256, xx % 256, (yy + xx) % 256], -1).astype(np.uint8)).save(img)
    p8, p64 = _peak(pkg, img, 8), _peak(pkg, img, 64)
    assert p64 <= 1.5 * p8, (p8, p64)
    # ONNX Runtime's arena dominates both peaks (~1.6 GB at batch 8), so also bound the growth:
    # one 1000x1000 float32 tensor is 12 MB; holding all 64 at once added ~750 MB
    assert p64 - p8 < 150 * 1024, (p8, p64)
