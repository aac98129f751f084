"""ONNX models that run as long as their author wants: a Loop whose trip count is either
2^63 - 1 (never ends) or proportional to the image's brightness (dark: no iteration,
white: seconds). Their logit is the image's mean normalized value."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ENDLESS = 2**63 - 1


def loop_onnx(path: Path, trips_per_unit: int | None = None, size: int = 16) -> Path:
    """`trips_per_unit=None`: 2^63 - 1 iterations; else relu(mean normalized pixel) x it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Mul", ["acc_in", "one"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.ones(1, np.float32), "one")])
    inits = [numpy_helper.from_array(np.array(True), "cond")]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("ReduceMean", ["f"], ["logit0"], axes=[1], keepdims=1)]
    if trips_per_unit is None:
        inits.append(numpy_helper.from_array(np.array(ENDLESS, np.int64), "trip"))
    else:
        inits.append(numpy_helper.from_array(np.array(float(trips_per_unit), np.float32), "k"))
        nodes += [helper.make_node("ReduceMean", ["logit0"], ["m"], keepdims=0),
                  helper.make_node("Relu", ["m"], ["r"]),
                  helper.make_node("Mul", ["r", "k"], ["t"]),
                  helper.make_node("Cast", ["t"], ["trip"], to=TensorProto.INT64)]
    nodes.append(helper.make_node("Loop", ["trip", "cond", "logit0"], ["output"], body=body))
    graph = helper.make_graph(
        nodes, "loop",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def loop_package(tmp: Path, trips_per_unit: int | None = None) -> Path:
    from conftest import write_spec
    from fakedet.cli import main

    tmp.mkdir(parents=True, exist_ok=True)
    onnx_path = loop_onnx(tmp / "loop.onnx", trips_per_unit if trips_per_unit is not None else 0)
    spec = write_spec(tmp / "loop-spec.json", name="loop")
    out = tmp / "loop.fdet"
    assert main(["package", str(onnx_path), "--input-spec", str(spec), "-o", str(out)]) == 0
    if trips_per_unit is None:  # swap in the endless model: `package` itself would never finish
        swap_model(out, lambda path: loop_onnx(path))
    return out


def swap_model(pkg: Path, write) -> Path:
    """Replace a package's model.onnx with what `write(path)` writes, re-hashed in the
    manifest: a package `fakedet package` would have refused to make."""
    import hashlib
    import json

    onnx_path = pkg / "model.onnx"
    write(onnx_path)
    manifest = json.loads((pkg / "manifest.json").read_text())
    for art in manifest["artifacts"]:
        if art["file"] == "model.onnx":
            art.update(sha256=hashlib.sha256(onnx_path.read_bytes()).hexdigest(), size=onnx_path.stat().st_size)
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    return pkg
