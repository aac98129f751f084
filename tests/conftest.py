import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

# Keep the suite inside its budget on 2 cores: one BLAS / OpenMP thread per test process.
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]

# Test modules share helpers across stage folders (`from test_calibration_units import ...`):
# every folder of tests is importable, whichever subset pytest is asked to run.
for _folder in sorted({p.parent for p in Path(__file__).resolve().parent.rglob("test_*.py")}):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))


def _tiny_weights(seed=0, two_class=False):
    rng = np.random.default_rng(seed)
    out = 2 if two_class else 1
    return {
        "conv_w": rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32),
        "conv_b": rng.normal(0, 0.1, (4,)).astype(np.float32),
        "fc_w": rng.normal(0, 1.0, (out, 4)).astype(np.float32),
        "fc_b": rng.normal(0, 0.1, (out,)).astype(np.float32),
    }


def build_tiny_onnx(path: Path, two_class=False, seed=0, dynamic_hw=False, size=16,
                    input_name="input", output_name="output", fixed_batch=None):
    """Conv3x3(3->4, pad 1) -> ReLU -> GlobalAveragePool -> Flatten -> Gemm(4->1|2)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = _tiny_weights(seed, two_class)
    out = w["fc_w"].shape[0]
    b = fixed_batch if fixed_batch else "N"
    hw = ["H", "W"] if dynamic_hw else [size, size]
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], [output_name], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [b, 3, *hw])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [b, out])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return w


def reference_forward(x: np.ndarray, w: dict) -> np.ndarray:
    """The tiny network computed with explicit numpy loops (independent of ONNX Runtime)."""
    x = x.astype(np.float64)
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    k = w["conv_w"].astype(np.float64)
    conv = np.zeros((n, k.shape[0], h, wd))
    for dy in range(3):
        for dx in range(3):
            patch = xp[:, :, dy : dy + h, dx : dx + wd]
            conv += np.einsum("nchw,oc->nohw", patch, k[:, :, dy, dx])
    conv += w["conv_b"][None, :, None, None]
    pooled = np.maximum(conv, 0).mean(axis=(2, 3))
    return pooled @ w["fc_w"].T.astype(np.float64) + w["fc_b"]


def assert_threads_agree(backend, w, threads=4, calls=5, rtol=1e-4, atol=1e-5):
    """`threads` threads call backend.infer `calls` times each on their own batch (1 to 5
    images); every output must match reference_forward."""
    import threading

    errors, done = [], []

    def worker(seed):
        x = np.random.default_rng(seed).standard_normal((1 + seed % 5, 3, 16, 16)).astype(np.float32)
        want = reference_forward(x, w)
        try:
            for _ in range(calls):
                np.testing.assert_allclose(backend.infer(x), want, rtol=rtol, atol=atol)
                done.append(1)
        except Exception as e:  # surfaced below
            errors.append(e)

    pool = [threading.Thread(target=worker, args=(s,)) for s in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    assert len(done) == threads * calls


@pytest.fixture
def tiny_onnx(tmp_path):
    path = tmp_path / "tiny.onnx"
    w = build_tiny_onnx(path)
    return path, w


def write_spec(path: Path, **over):
    spec = {
        "name": "tiny",
        "input": {
            "name": "input",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "preprocess": {"policy": "center-crop", "size": [16, 16], "small_images": "pad"},
        },
        "output": {"name": "output", "kind": "logit"},
        "threshold": 0.5,
    }
    for k, v in over.items():
        spec[k] = v
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def tiny_package(tmp_path, tiny_onnx):
    from fakedet.cli import main

    onnx_path, w = tiny_onnx
    spec = write_spec(tmp_path / "spec.json")
    out = tmp_path / "tiny.fdet"
    assert main(["package", str(onnx_path), "--input-spec", str(spec), "-o", str(out)]) == 0
    return out, w


def save_image(path: Path, size=(24, 20), seed=0, mode="RGB", fmt=None):
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path
