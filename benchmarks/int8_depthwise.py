"""Why INT8 does or does not pay on depthwise nets (efficientnet_b0, mobilenetv3_large_100) on
ONNX Runtime's CPU provider: per-op profile and Q/DQ placements, from a package that
benchmarks/foreign_int8.py calibrated (its --work folder keeps them).

Placements, all from the package's own calibration ranges (calibration.json), CPU flavour
(uint8 activations, 7-bit per-channel weights):
  fakedet          model.int8-cpu.onnx as calibrated
  dw-float         the depthwise Convs (group == channels) kept in float
  act-ops          also Sigmoid / HardSigmoid / HardSwish quantized (QLinear kernels where ORT has them)
  conv-only        only Conv / Gemm quantized, everything else in float
Per placement: img/s against FP32 (batch 8, interleaved, median), the executed graph (ORT's
optimized model: INT8 Convs vs float Convs, Q/DQ nodes left) and ORT's profiler totals per op
type (where the time goes).

    .venv/bin/python benchmarks/int8_depthwise.py --work WORK [--models efficientnet_b0,mobilenetv3_large_100]
Writes benchmarks/results/int8_depthwise-<cpu>.{json,md} (other models' rows of an earlier run kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from calibration_int8 import machine_id  # noqa: E402
from foreign_int8 import BATCH, log, session, throughput  # noqa: E402

ACT_OPS = ["Sigmoid", "HardSigmoid", "HardSwish"]


def depthwise_convs(model) -> list[str]:
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if n.op_type == "Conv" and group > 1 and n.input[1] in inits and inits[n.input[1]].dims[1] == 1:
            out.append(n.name)
    return out


def placements(pkg: Path, work: Path) -> dict[str, Path]:
    import onnx

    from fakedet.calibration import qdq as qdq_mod
    from fakedet.calibration.surgery import strip_qdq_on
    from fakedet.onnx_graph import name_nodes

    rep = json.loads((pkg / "calibration.json").read_text())
    named = onnx.load(str(pkg / "model.onnx"))
    name_nodes(named)
    named_path = work / "named.onnx"
    onnx.save(named, str(named_path))
    no_range = rep.get("range_notes", {}).get("kept_float", {})
    amax = {**dict.fromkeys(no_range, 1.0), **rep["ranges"]}
    out = {"fakedet": pkg / "model.int8-cpu.onnx"}
    base_ops = list(qdq_mod.QUANTIZED_OPS)
    variants = {"dw-float": (base_ops, depthwise_convs(named)), "act-ops": (base_ops + ACT_OPS, []),
                "conv-only": (["Conv", "Gemm"], [])}  # fmt: skip
    for name, (ops, float_nodes) in variants.items():
        qdq_mod.QUANTIZED_OPS[:] = ops
        try:
            m = qdq_mod.quantize_qdq(named_path, amax, True, work / f"{name}.onnx", activations="uint8",
                                     weights="int8-7bit", float_nodes=float_nodes)  # fmt: skip
        finally:
            qdq_mod.QUANTIZED_OPS[:] = base_ops
        strip_qdq_on(m, no_range, named)
        onnx.save(m, str(work / f"{name}.onnx"))
        out[name] = work / f"{name}.onnx"
    return out


def executed(path: Path, work: Path) -> dict:
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(work / f"{path.stem}.executed.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    return {"QLinearConv": ops["QLinearConv"], "float Conv": ops["Conv"] + ops["FusedConv"],
            "QuantizeLinear": ops["QuantizeLinear"], "DequantizeLinear": ops["DequantizeLinear"],
            "other QLinear": sum(v for k, v in ops.items() if k.startswith("QLinear") and k != "QLinearConv")}


def profile(path: Path, batch: np.ndarray, runs: int = 3) -> dict:
    """ORT profiler: ms per batch per op type (kernel time, mean of `runs`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = os.cpu_count() or 1
    so.enable_profiling = True
    so.profile_file_prefix = str(path.with_suffix(""))
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: batch}
    s.run(None, feed)
    prof_path = s.end_profiling()
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        s.run(None, feed)
    prof_path = s.end_profiling()
    per: dict[str, float] = defaultdict(float)
    for ev in json.loads(Path(prof_path).read_text()):
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            per[ev["args"]["op_name"]] += ev["dur"] / 1000 / runs
    Path(prof_path).unlink()
    return dict(sorted(per.items(), key=lambda kv: -kv[1]))


def run_model(name: str, work: Path, repeats: int) -> dict:
    import onnx

    from fakedet.manifest import InputSpec
    from foreign_int8 import spec_file, tensors

    pkg = work / name / "normalised.fdet"
    tmp = Path(tempfile.mkdtemp(prefix=f"dw-{name}-"))
    guarded = (pkg / "calibration.json").is_file()
    if not guarded:  # the accuracy guard refused INT8: profile an unguarded calibration (speed only)
        from fakedet.calibration.pipeline import Options, calibrate

        log(f"{name}: no calibrated package (guard refused INT8); calibrating without --eval-data for the profile")
        calibrate(pkg, Options(data=work / "calib", samples=64, progress=False), out=tmp / "unguarded.fdet")
        pkg = tmp / "unguarded.fdet"
    spec = InputSpec.from_dict(json.loads(spec_file(tmp / "spec.json").read_text())["input"])
    _, x = tensors(work / "calib", spec)
    batch = x[:BATCH]
    paths = {"fp32": pkg / "model.onnx", **placements(pkg, tmp)}
    log(f"{name}: throughput")
    ips = throughput({k: (lambda s=session(p), b=batch: s.run(None, {s.get_inputs()[0].name: b})) for k, p in paths.items()},
                     repeats)  # fmt: skip
    l32 = session(paths["fp32"]).run(None, {"input": x})[0].ravel()
    rows = {}
    for k, p in paths.items():
        log(f"{name}: profile {k}")
        l8 = session(p).run(None, {"input": x})[0].ravel()
        rows[k] = {"img_s": ips[k], "vs_fp32": ips[k] / ips["fp32"], "executed": executed(p, tmp),
                   "profile_ms": {op: round(ms, 2) for op, ms in list(profile(p, batch).items())[:8]},
                   "max_abs_logit_diff": float(np.max(np.abs(l8 - l32)))}  # fmt: skip
    return {"model": name, "depthwise_convs": len(depthwise_convs(onnx.load(str(pkg / "model.onnx")))),
            "placements": rows, "guarded": guarded, "load": os.getloadavg()}


def markdown(res: dict) -> str:
    lines = ["# INT8 placements on depthwise nets (benchmarks/int8_depthwise.py)", "",
             f"CPU: {res['cpu']}, {res['threads']} threads, batch {BATCH}; load at the end `{res['uptime']}`", ""]
    for r in res["rows"]:
        why = "" if r.get("guarded", True) else "; the accuracy guard refused its INT8, so these come from an unguarded calibration"
        lines += [f"## {r['model']} ({r['depthwise_convs']} depthwise Convs{why})", "",
                  "| placement | vs FP32 | INT8 Convs / float Convs | Q / DQ left | max dlogit | top ops by time (ms per batch) |",
                  "| --- | ---: | --- | --- | ---: | --- |"]
        for k, p in r["placements"].items():
            e = p["executed"]
            top = ", ".join(f"{op} {ms:.0f}" for op, ms in list(p["profile_ms"].items())[:5])
            lines.append(f"| {k} | {p['vs_fp32']:.2f}x | {e['QLinearConv']} / {e['float Conv']} | "
                         f"{e['QuantizeLinear']} / {e['DequantizeLinear']} | {p['max_abs_logit_diff']:.3g} | {top} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="benchmarks/foreign_int8.py's --work folder")
    ap.add_argument("--models", default="efficientnet_b0,mobilenetv3_large_100")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    slug, cpu, _ = machine_id()
    out = HERE / "results" / f"int8_depthwise-{slug}"
    old = json.loads(out.with_suffix(".json").read_text())["rows"] if out.with_suffix(".json").exists() else []
    fresh = [run_model(m, args.work, args.repeats) for m in args.models.split(",")]
    rows = [r for r in old if r["model"] not in {f["model"] for f in fresh}] + fresh  # earlier runs' other models kept
    res = {"cpu": cpu, "threads": os.cpu_count(), "rows": rows,
           "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
