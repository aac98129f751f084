"""The x86 / aarch64 halves of `make test-arm64` (scripts/test_arm64.sh runs both).

  make DIR    (x86, full fakedet) a small CNN detector packaged with `fakedet package`, its INT8
              made with `fakedet calibrate` (accuracy guard on held-out images), and x86's scores
              of the held-out images: FP32, INT8 (ORT's kernels), INT8's exact quantization arithmetic
  check DIR   (aarch64, fakedet's runtime only: no torch, no onnx) the same scores there, then
              the verdicts: FP32 scores (P(fake)) equal to x86's within 1e-5; INT8 kernels equal to the exact
              arithmetic; INT8 within the guard's score-shift budget of FP32; printed as a table
              and written to DIR/arm64-vs-x86.json

  score PKG OUT.json IMAGE...   (anywhere, runtime only) any package's scores of some images
              (FP32, INT8 kernels, INT8 exact arithmetic) and this CPU's record, to compare CPUs

Only numpy, Pillow and onnxruntime are used on the aarch64 side (plus fakedet.runtime).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

SIZE = 32
FP32_TOL = 1e-5
KERNEL_TOL = 1e-3  # fused requantization may round once where the QDQ graph rounds twice


def _images(root: Path, n: int, seed: int, labelled: bool = True) -> None:
    """Photo-like squares of noise around a brightness level: fakes brighter than reals."""
    rng = np.random.default_rng(seed)
    from PIL import Image

    for label, level in ((("0_real", 0.35), ("1_fake", 0.55)) if labelled else (("", 0.45),)):
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = rng.integers(SIZE, 2 * SIZE, 2)
            arr = np.clip(rng.normal(level, 0.15, (h, w, 3)) + rng.normal(0, 0.1, 3), 0, 1)
            Image.fromarray((arr * 255).astype(np.uint8)).save(d / f"{seed}_{i}.png")


def _net(path: Path, train: Path) -> None:
    """conv 3->16 -> relu -> conv 16->16 (stride 2) -> relu -> pool -> 1 logit, the head
    fitted by least squares on pooled features of labelled images (a detector with signal)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fakedet.manifest import InputSpec, Preprocess
    from fakedet.runtime import preprocess

    rng = np.random.default_rng(0)
    w = {"wa": rng.normal(size=(16, 3, 3, 3)) * 0.3, "ba": rng.normal(size=16) * 0.1,
         "wb": rng.normal(size=(16, 16, 3, 3)) * 0.15, "bb": rng.normal(size=16) * 0.1}  # fmt: skip

    def graph(head: dict | None):
        nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["a"], ["ar"]),
                 helper.make_node("Conv", ["ar", "wb", "bb"], ["b"], pads=[1, 1, 1, 1], strides=[2, 2]),
                 helper.make_node("Relu", ["b"], ["br"]),
                 helper.make_node("GlobalAveragePool", ["br"], ["g"]),
                 helper.make_node("Flatten", ["g"], ["f"])]  # fmt: skip
        out = "f"
        inits = dict(w)
        if head is not None:
            nodes.append(helper.make_node("Gemm", ["f", "wf", "bf"], ["logit"], transB=1))
            inits.update(head)
            out = "logit"
        g = helper.make_graph(nodes, "arm64-check", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 16 if head is None else 1])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])  # fmt: skip
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m

    import onnxruntime as ort

    spec = InputSpec(name="x", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), preprocess=Preprocess(policy="center-crop", size=(SIZE, SIZE)))
    files = sorted(train.rglob("*.png"))
    x = np.stack([preprocess(f, spec) for f in files])
    y = np.array([1.0 if "1_fake" in f.parts else -1.0 for f in files])
    feats = ort.InferenceSession(graph(None).SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    a = np.concatenate([feats, np.ones((len(feats), 1))], 1)
    coef = np.linalg.lstsq(a, 3 * y, rcond=None)[0]
    onnx.save(graph({"wf": coef[None, :-1], "bf": coef[-1:]}), str(path))


def scores(pkg: Path, photos: list[Path]) -> dict:
    """{fp32, int8 (ORT's kernels), int8_exact (QDQ as float math)}: logits per photo, here."""
    import onnxruntime as ort

    from fakedet.package import ModelPackage
    from fakedet.runtime import Detector, preprocess
    from fakedet.runtime.selection import onnx_for

    out = {}
    for prec in ("fp32", "int8"):
        with Detector.open(pkg, backend="ort-cpu", precision=prec) as det:
            out[prec] = [p.logit for p in det.predict([str(p) for p in photos])]
    p = ModelPackage.open(pkg)
    art = onnx_for(p, "int8", target="ort-cpu")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(p.path_of(art)), so, providers=["CPUExecutionProvider"])
    x = np.stack([preprocess(str(ph), p.manifest.input) for ph in photos])
    out["int8_exact"] = s.run(None, {s.get_inputs()[0].name: x})[0].ravel().astype(float).tolist()
    return out


def _forms(d: Path) -> None:
    """benchmarks/int8_cpu_tiers.py's two-conv net in each candidate INT8 form, and inputs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from int8_cpu_tiers import FORMS, two_conv_net

    from fakedet.calibration.qdq import quantize_qdq
    from fakedet.calibration.ranges import compute_ranges, method_params

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    calib = [rng.uniform(0, 1, (8, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    two_conv_net(d / "fp32.onnx")
    amax = compute_ranges(d / "fp32.onnx", calib, "percentile", method_params("percentile"), progress=False)
    for name, (act, weights) in FORMS.items():
        quantize_qdq(d / "fp32.onnx", amax, True, d / f"{name}.onnx", activations=act, weights=weights)
    np.save(d / "x.npy", rng.uniform(0, 1, (64, 3, 16, 16)).astype(np.float32))


def make(d: Path) -> int:
    from fakedet.runtime.cpu_tier import cpu_record

    d.mkdir(parents=True, exist_ok=True)
    _images(d / "train", 24, seed=1)
    _images(d / "calib", 16, seed=2)
    _images(d / "heldout", 32, seed=3)
    _net(d / "net.onnx", d / "train")
    spec = {"name": "arm64-check", "architecture": "small-cnn",
            "input": {"name": "x", "mean": [0.5] * 3, "std": [0.25] * 3,
                      "preprocess": {"policy": "center-crop", "size": [SIZE, SIZE], "small_images": "pad"}},
            "output": {"name": "logit", "kind": "logit"}, "threshold": 0.5}  # fmt: skip
    (d / "spec.json").write_text(json.dumps(spec))
    fk = [str(Path(sys.executable).parent / "fakedet")]
    subprocess.run(fk + ["package", str(d / "net.onnx"), "--input-spec", str(d / "spec.json"), "-o", str(d / "det.fdet")], check=True)
    subprocess.run(fk + ["calibrate", str(d / "det.fdet"), "--data", str(d / "calib"), "--eval-data", str(d / "heldout"),
                         "--samples", "32", "-q"], check=True)  # fmt: skip
    _forms(d / "forms")
    photos = sorted((d / "heldout").rglob("*.png"))  # the guard's own images: its budget applies
    ref = {"cpu": cpu_record(), "photos": [str(p.relative_to(d)) for p in photos], **scores(d / "det.fdet", photos)}
    (d / "x86.json").write_text(json.dumps(ref, indent=1))
    print(f"x86 fixtures in {d}: det.fdet (FP32 + INT8), {len(photos)} held-out images scored")
    return 0


def check(d: Path) -> int:
    from fakedet.package import ModelPackage
    from fakedet.runtime.cpu_tier import cpu_record, describe, kernel_vs_exact
    from fakedet.runtime.scoring import sigmoid

    assert "torch" not in sys.modules
    ref = json.loads((d / "x86.json").read_text())
    photos = [d / n for n in ref["photos"]]
    here = scores(d / "det.fdet", photos)
    rep = json.loads((ModelPackage.open(d / "det.fdet").root / "calibration.json").read_text())
    budget = rep["artifacts"]["model.int8-cpu.onnx"]["guard"]["max_score_shift"]
    a, x = {k: np.array(v) for k, v in here.items()}, {k: np.array(ref[k]) for k in here}
    verdict = {
        "fp32_max_abs_dscore_vs_x86": float(np.abs(sigmoid(a["fp32"]) - sigmoid(x["fp32"])).max()),
        "fp32_max_abs_dlogit_vs_x86": float(np.abs(a["fp32"] - x["fp32"]).max()),
        "int8_kernels_vs_exact_max_abs_dlogit": float(np.abs(a["int8"] - a["int8_exact"]).max()),
        "int8_exact_vs_x86_exact_max_abs_dlogit": float(np.abs(a["int8_exact"] - x["int8_exact"]).max()),
        "int8_vs_x86_int8_max_abs_dlogit": float(np.abs(a["int8"] - x["int8"]).max()),
        "int8_mean_abs_dp_vs_fp32": {"aarch64": float(np.abs(sigmoid(a["int8"]) - sigmoid(a["fp32"])).mean()),
                                     "x86": float(np.abs(sigmoid(x["int8"]) - sigmoid(x["fp32"])).mean())},
        "guard_max_score_shift": budget,
    }  # fmt: skip
    x_forms = np.load(d / "forms" / "x.npy")
    verdict["forms_kernels_vs_exact_two_conv_net"] = {
        f.stem: kernel_vs_exact(str(f), x_forms) for f in sorted((d / "forms").glob("*.onnx")) if f.stem != "fp32"
    }
    ok = (verdict["fp32_max_abs_dscore_vs_x86"] <= FP32_TOL and verdict["int8_kernels_vs_exact_max_abs_dlogit"] <= KERNEL_TOL
          and max(verdict["int8_mean_abs_dp_vs_fp32"].values()) <= budget)  # fmt: skip
    result = {"aarch64_cpu": cpu_record(), "x86_cpu": ref["cpu"], "machine": platform.machine(), "photos": ref["photos"],
              "aarch64": here, "x86": {k: ref[k] for k in here}, "verdict": verdict, "passed": ok}  # fmt: skip
    (d / "arm64-vs-x86.json").write_text(json.dumps(result, indent=1))
    print(f"aarch64: {describe(cpu_record())}\nx86: {describe(ref['cpu'])}")
    print(f"| photo | FP32 x86 | FP32 aarch64 | INT8 x86 | INT8 aarch64 | INT8 exact arithmetic (aarch64) |\n|---|---|---|---|---|---|")
    for i, n in enumerate(ref["photos"][:4]):
        print(f"| {n} | {x['fp32'][i]:.6f} | {a['fp32'][i]:.6f} | {x['int8'][i]:.4f} | {a['int8'][i]:.4f} | {a['int8_exact'][i]:.4f} |")
    print(json.dumps(verdict, indent=1))
    print("PASS" if ok else "FAIL", "(FP32 scores within 1e-5 of x86's; INT8 kernels = exact arithmetic; INT8 within the "
          "guard's score-shift budget of FP32)")
    return 0 if ok else 1


def score(pkg: Path, out: Path, images: list[Path]) -> int:
    from fakedet.runtime.cpu_tier import cpu_record

    got = {"cpu": cpu_record(), "images": [p.name for p in images], **scores(pkg, images)}
    out.write_text(json.dumps(got, indent=1))
    print(json.dumps({k: v for k, v in got.items() if k != "cpu"}))
    return 0


if __name__ == "__main__":
    cmd, where = sys.argv[1], Path(sys.argv[2])
    if cmd == "score":
        sys.exit(score(where, Path(sys.argv[3]), [Path(a) for a in sys.argv[4:]]))
    sys.exit({"make": make, "check": check}[cmd](where))
