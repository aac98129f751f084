"""Does an INT8 QDQ form's accuracy depend on the CPU tier that runs it? A two-conv net
(3 -> 8 -> 8 channels, 3x3, ReLU, pool, 1-logit head), quantized with fakedet's ranges and
placement in each candidate form; per form, the max |logit| difference of:
  exact vs fp32    the exact quantization arithmetic (ORT, graph optimizations off)
  kernels vs fp32  ORT's fused INT8 kernels on this CPU
  kernels vs exact what the CPU's kernels add (0 where they are exact)

Run it natively and under an emulated CPU of another tier, e.g. AMD Zen 3 (AVX2, no VNNI):
    qemu-x86_64-static -cpu EPYC-Milan-v1 .venv/bin/python benchmarks/int8_cpu_tiers.py
With --check FORM it exits 1 unless that form's kernels equal the exact arithmetic (within
--tol) here; `make test-avx2` does that under the emulated Zen 3.

With --models A.onnx,B.onnx --package P.fdet --images DIR it instead writes the logits of the
first 4 images of DIR (preprocessed by P's manifest) under each model, to compare the same
artifacts across tiers (results/int8_cpu_tiers.md: a ResNet-50, native VNNI vs emulated Zen 3).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

# name -> (activations, weights) for calibration.qdq.quantize_qdq
FORMS = {
    "u8s8": ("uint8", "int8"),
    "u8s8-7bit": ("uint8", "int8-7bit"),
    "u8u8": ("uint8", "uint8"),
    "s8s8": ("int8", "int8"),
}


def two_conv_net(path: Path, seed: int = 0) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = {"wa": rng.normal(size=(8, 3, 3, 3)) * 0.4, "ba": rng.normal(size=8) * 0.1,
         "wb": rng.normal(size=(8, 8, 3, 3)) * 0.2, "bb": rng.normal(size=8) * 0.1,
         "wf": rng.normal(size=(1, 8)), "bf": np.array([0.1])}  # fmt: skip
    conv = {"pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", **conv),
             helper.make_node("Relu", ["a"], ["ar"], name="relu_a"),
             helper.make_node("Conv", ["ar", "wb", "bb"], ["b"], name="conv_b", **conv),
             helper.make_node("Relu", ["b"], ["br"], name="relu_b"),
             helper.make_node("GlobalAveragePool", ["br"], ["g"], name="pool"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["logit"], name="head", transB=1)]  # fmt: skip
    graph = helper.make_graph(
        nodes, "two-conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def measure(forms: list[str], images: int = 64, seed: int = 1) -> dict:
    from fakedet.calibration.ort_run import session
    from fakedet.calibration.qdq import quantize_qdq
    from fakedet.calibration.ranges import compute_ranges, method_params
    from fakedet.runtime.cpu_tier import kernel_vs_exact

    rng = np.random.default_rng(seed)
    calib = [rng.uniform(0, 1, (8, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    x = rng.uniform(0, 1, (images, 3, 16, 16)).astype(np.float32)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="fakedet-tiers-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        two_conv_net(fp32)
        amax = compute_ranges(fp32, calib, "percentile", method_params("percentile"), progress=False)
        l32 = session(fp32).run(None, {"x": x})[0]
        for name in forms:
            act, weights = FORMS[name]
            q = Path(tmp) / f"{name}.onnx"
            quantize_qdq(fp32, amax, True, q, activations=act, weights=weights)
            exact = session(q, exact=True).run(None, {"x": x})[0]
            kernels = session(q).run(None, {"x": x})[0]
            rows[name] = {"exact_vs_fp32": float(np.abs(exact - l32).max()),
                          "kernels_vs_fp32": float(np.abs(kernels - l32).max()),
                          "kernels_vs_exact": kernel_vs_exact(str(q), x)}  # fmt: skip
    return rows


def artifact_logits(models: list[Path], package: Path, images: Path, n: int = 4) -> dict:
    from fakedet.package import ModelPackage
    from fakedet.runtime import preprocess

    from fakedet.calibration.ort_run import session

    spec = ModelPackage.open(package).manifest.input
    x = np.stack([preprocess(str(f), spec) for f in sorted(images.rglob("*.png"))[:n]])
    out = {}
    for m in models:
        s = session(m, threads=2)
        out[m.name] = s.run(None, {s.get_inputs()[0].name: x})[0].ravel().tolist()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--check", default=None, help="exit 1 unless this form's kernels equal the exact arithmetic")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--models", default=None, help="comma-separated INT8 ONNX files to score (with --package, --images)")
    ap.add_argument("--package", type=Path, default=None)
    ap.add_argument("--images", type=Path, default=None)
    args = ap.parse_args()
    if args.models:
        got = artifact_logits([Path(m) for m in args.models.split(",")], args.package, args.images)
        print(json.dumps(got, indent=1))
        if args.json:
            args.json.write_text(json.dumps(got, indent=1) + "\n")
        return 0
    forms = [f for f in args.forms.split(",") if f]
    rows = measure(forms)
    print("| form | exact vs fp32 | kernels vs fp32 | kernels vs exact |\n| --- | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r['exact_vs_fp32']:.4f} | {r['kernels_vs_fp32']:.4f} | {r['kernels_vs_exact']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.check:
        got = rows[args.check]["kernels_vs_exact"] if args.check in rows else measure([args.check])[args.check]["kernels_vs_exact"]
        if got > args.tol:
            print(f"FAIL: {args.check} kernels differ from the exact arithmetic by {got:.4f} (> {args.tol})", file=sys.stderr)
            return 1
        print(f"OK: {args.check} kernels equal the exact arithmetic within {args.tol} (max |diff| {got:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
