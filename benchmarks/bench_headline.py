"""Reproduce fakedet's headline CPU table on this machine.

    .venv/bin/python benchmarks/bench_headline.py [--machine NAME] [--threads N] [--duration S]

Builds (once, cached under --work) a ResNet-50-class detector package:
fakedet.train.models "resnet50" (torchvision ResNet-50, 1-logit head, random init: no
download), saved as a fakedet checkpoint, exported to ONNX FP32 (torch.onnx.export,
opset 17, dynamic batch), wrapped with PackageWriter, and quantized to INT8 QDQ
(per-channel int8 symmetric weights, uint8 activations: the form ONNX Runtime's CPU
kernels fuse) with onnxruntime.quantization.quantize_static on preprocessed synthetic
images, after ORT's quant_pre_process. An S8S8 (symmetric int8 activations, the
TensorRT-friendly form) copy is measured beside it, not packaged. (Built here rather than with `fakedet export` / `fakedet calibrate`
so the script does not depend on those commands' options; the artifacts are of the
same kinds.)

Then, in one process with the same thread count, batch 8, interleaving the
configurations repeat by repeat (so drift on a shared machine hits them alike):
  bare       onnxruntime.InferenceSession.run on the FP32 ONNX
  ort-fp32   fakedet's ONNX Runtime backend, FP32
  ort-int8   fakedet's ONNX Runtime backend, INT8 QDQ
  torch      PyTorch eager FP32 from the checkpoint (fakedet's torch backend)
and reports throughput medians, ratios and the targets:
  fakedet ORT within 5% of bare; ORT FP32 >= 1.4x torch; ORT INT8 >= 4x torch.
Finally it runs `fakedet bench` (torch, ort-cpu fp32/int8, batch 1 and 8) for the full
latency table. Writes benchmarks/results/<machine>.md, .json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
S8S8_FILE = "model.int8-s8s8.onnx"


def log(msg: str) -> None:
    print(f"[headline {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- package ---------------------------------------------------------------
def build_package(work: Path, size: int, calib_images: int) -> Path:
    import torch

    from fakedet.manifest import Manifest
    from fakedet.package import PackageWriter
    from fakedet.train.checkpoint import save_checkpoint
    from fakedet.train.models import create_model, model_input_spec

    pkg_dir = work / "resnet50-headline.fdet"
    if (pkg_dir / "manifest.json").is_file() and (work / S8S8_FILE).is_file():
        log(f"reusing {pkg_dir}")
        return pkg_dir
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    kwargs = {"crop_size": size}
    model = create_model("resnet50", pretrained="none", **kwargs).eval()
    ckpt = save_checkpoint(work / "resnet50-headline.ckpt", model, {"arch": "resnet50", "model_kwargs": kwargs})
    spec = model_input_spec("resnet50", **kwargs)
    fp32 = work / "model.onnx"
    log("exporting ONNX FP32")
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(fp32), input_names=[spec.name],
                          output_names=["logit"], dynamic_axes={spec.name: {0: "batch"}, "logit": {0: "batch"}},
                          opset_version=17, dynamo=False)
    log(f"quantizing INT8 QDQ per-channel on {calib_images} synthetic images")
    int8 = work / "model.int8.onnx"
    quantize(fp32, int8, spec, calib_images, "u8")
    quantize(fp32, work / S8S8_FILE, spec, calib_images, "s8")  # compared, not packaged
    manifest = Manifest(name="resnet50-headline", architecture="resnet50", input=spec,
                        provenance={"checkpoint": ckpt.name, "note": "random-init weights: speed only"})
    with PackageWriter(pkg_dir, manifest) as w:
        w.add_file(fp32, "model.onnx", "onnx-fp32")
        w.add_file(int8, "model.int8.onnx", "onnx-int8-qdq", target="ort-cpu", method="minmax", per_channel=True,
                   activations="uint8-asymmetric", weights="int8-symmetric",
                   tool="onnxruntime.quantization.quantize_static")
    return pkg_dir


def quantize(src: Path, dst: Path, spec, n: int, activations: str = "u8") -> None:
    """QDQ per-channel INT8. activations "u8": asymmetric uint8 activations, int8 symmetric
    weights (U8S8: what ONNX Runtime's CPU kernels fuse fully into QLinearConv); "s8":
    symmetric int8 activations with zero-point 0 (S8S8: the TensorRT-friendly form)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from PIL import Image

    from fakedet.runtime.preprocess import preprocess_image

    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= n:
                return None
            self.i += 1
            h, w = spec.preprocess.size
            img = Image.fromarray(rng.integers(0, 256, (h + 32, w + 32, 3), dtype=np.uint8), "RGB")
            return {spec.name: preprocess_image(img, spec)[None]}

    # The exporter shares identical biases through Identity nodes; the quantizer then leaves
    # those Convs in float. ORT's pre-processing (shape inference + graph optimisation) folds them.
    pre = dst.with_name(dst.stem + ".pre.onnx")
    quant_pre_process(str(src), str(pre))
    u8 = activations == "u8"
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8 if u8 else QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": not u8, "WeightSymmetric": True})
    pre.unlink(missing_ok=True)


# ---- interleaved headline ---------------------------------------------------
def headline(pkg_dir: Path, work: Path, batch: int, threads: int, warmup: float, duration: float, repeats: int) -> dict:
    import onnxruntime as ort

    from fakedet.package import ModelPackage
    from fakedet.runtime.bench import stats as st
    from fakedet.runtime.selection import choose, make_backend

    pkg = ModelPackage.open(pkg_dir)
    spec = pkg.manifest.input
    h, w = spec.preprocess.size
    x = np.random.default_rng(0).standard_normal((batch, 3, h, w)).astype(np.float32)

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Four engines share this process and the cores: ONNX Runtime's idle spin-wait in one
    # would steal cycles from the next, so every session (bare included) turns it off.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    bare = ort.InferenceSession(str(pkg.path_of(pkg.manifest.artifact("onnx-fp32"))), so,
                                providers=["CPUExecutionProvider"])
    feed, out_names = {bare.get_inputs()[0].name: x}, [bare.get_outputs()[0].name]
    fp32 = make_backend(choose(pkg, "ort-cpu", "fp32"), pkg, threads=threads, spin=False).open()
    int8 = make_backend(choose(pkg, "ort-cpu", "int8"), pkg, threads=threads, spin=False).open()
    tb = make_backend(choose(pkg, "torch", "fp32"), pkg, device="cpu", threads=threads).open()
    from fakedet.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    s8 = OnnxRuntimeBackend(work / S8S8_FILE, "ort-cpu", threads=threads, spin=False).open()

    configs = {
        "bare": lambda: bare.run(out_names, feed),
        "ort-fp32": lambda: fp32.infer(x),
        "ort-int8": lambda: int8.infer(x),
        "ort-int8-s8s8": lambda: s8.infer(x),
        "torch": lambda: tb.infer(x),
    }
    for name, fn in configs.items():
        log(f"warm-up {name}")
        t_end = time.perf_counter() + warmup
        fn()
        while time.perf_counter() < t_end:
            fn()
    thr = {k: [] for k in configs}
    for r in range(repeats):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))  # ABBA: cancels linear drift
        for name in order:
            fn, its = configs[name], 0
            t0 = time.perf_counter()
            while its < 2 or time.perf_counter() - t0 < duration:
                fn()
                its += 1
            thr[name].append(batch * its / (time.perf_counter() - t0))
        log(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in thr.items()))
    med = {k: st.median(v) for k, v in thr.items()}
    # Overhead from paired repeats (same slot in time) is less noisy than a ratio of medians.
    paired = [f / b for f, b in zip(thr["ort-fp32"], thr["bare"])]
    out = {
        "batch": batch,
        "threads": threads,
        "throughput_img_s": {k: st.Spread.of(v).to_dict() for k, v in thr.items()},
        "overhead_vs_bare": 1.0 - st.median(paired),
        "fp32_vs_torch": med["ort-fp32"] / med["torch"],
        "int8_vs_torch": med["ort-int8"] / med["torch"],
        "int8_vs_fp32": med["ort-int8"] / med["ort-fp32"],
        "int8_s8s8_vs_torch": med["ort-int8-s8s8"] / med["torch"],
    }
    for b in (fp32, int8, s8, tb):
        b.close()
    pkg.close()
    return out


def fused_ops(path: Path, threads: int) -> dict:
    """Op counts of the graph ONNX Runtime's CPU provider really runs (after its QDQ fusions)."""
    import tempfile
    from collections import Counter

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ops = Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    return {"QLinearConv": ops.get("QLinearConv", 0), "Conv (float)": ops.get("Conv", 0) + ops.get("FusedConv", 0),
            "QuantizeLinear": ops.get("QuantizeLinear", 0), "DequantizeLinear": ops.get("DequantizeLinear", 0)}


# ---- report ------------------------------------------------------------------
def write_markdown(path: Path, machine: str, head: dict, bench_report: dict, args) -> None:
    from fakedet.calibration.cpu_speed import cpu_model
    from fakedet.runtime.bench import format_table

    t = head["throughput_img_s"]
    ok = lambda c: "met" if c else "**not met**"  # noqa: E731
    lines = [
        f"# fakedet headline benchmark: {machine}",
        "",
        f"- CPU: {cpu_model()} ({os.cpu_count()} logical cores visible); {platform.platform()}",
        f"- onnxruntime {bench_report['machine'].get('onnxruntime')}, torch {bench_report['machine'].get('torch')}, "
        f"Python {platform.python_version()}",
        f"- model: ResNet-50 (fakedet.train.models 'resnet50', 1-logit head, random init), "
        f"{args.size}x{args.size}, batch {head['batch']}, {head['threads']} threads",
        f"- machine load (1-min loadavg) at start {args.load_start:.1f}, at end {os.getloadavg()[0]:.1f} (the benchmark's "
        f"own threads count: {head['threads']}); ratios come from interleaved repeats, so load hits every row alike",
        f"- method: warm-up {args.warmup:g} s each, {args.repeats} interleaved repeats of {args.duration:g} s; "
        f"median of repeats, spread min-max; command: `{' '.join(sys.argv)}`",
        f"- built here: checkpoint -> torch.onnx.export (opset 17) -> PackageWriter; INT8 = onnxruntime "
        f"quant_pre_process + quantize_static QDQ per-channel (weights int8 symmetric; activations uint8 for the "
        f"packaged CPU artifact, int8 symmetric for the S8S8 comparison row), {args.calib} synthetic calibration images",
        "",
        "## Headline (batch %d, CPU)" % head["batch"],
        "",
        "| configuration | img/s (median) | spread (min-max) |",
        "| --- | ---: | ---: |",
    ]
    names = {"bare": "bare InferenceSession.run (FP32)", "ort-fp32": "fakedet ORT backend FP32",
             "ort-int8": "fakedet ORT backend INT8 (QDQ U8S8: uint8 activations, packaged)",
             "ort-int8-s8s8": "fakedet ORT backend INT8 (QDQ S8S8 symmetric, TensorRT-style; not packaged)",
             "torch": "PyTorch eager FP32"}
    for k, label in names.items():
        lines.append(f"| {label} | {t[k]['median']:.2f} | {t[k]['min']:.2f}-{t[k]['max']:.2f} |")
    lines += [
        "",
        "| target | measured | status |",
        "| --- | ---: | --- |",
        f"| fakedet ORT overhead vs bare session <= 5% (median of paired repeats; negative = fakedet faster) | "
        f"{100 * head['overhead_vs_bare']:+.1f}% | "
        f"{ok(head['overhead_vs_bare'] <= 0.05)} |",
        f"| ORT FP32 >= 1.4x PyTorch eager FP32 | {head['fp32_vs_torch']:.2f}x | {ok(head['fp32_vs_torch'] >= 1.4)} |",
        f"| ORT INT8 >= 4x PyTorch eager FP32 | {head['int8_vs_torch']:.2f}x | {ok(head['int8_vs_torch'] >= 4.0)} |",
        f"| (INT8 U8S8 vs ORT FP32, for reference) | {head['int8_vs_fp32']:.2f}x | |",
        f"| (INT8 S8S8 vs PyTorch eager FP32, for reference) | {head['int8_s8s8_vs_torch']:.2f}x | |",
        "",
        "## What ONNX Runtime's CPU provider runs of each INT8 model",
        "",
        "| INT8 flavour | " + " | ".join(head["fused_ops"]["u8s8"]) + " |",
        "| --- |" + " ---: |" * len(head["fused_ops"]["u8s8"]),
        *[f"| {k} | " + " | ".join(str(v) for v in ops.values()) + " |" for k, ops in head["fused_ops"].items()],
        "",
        "S8S8 (symmetric int8 activations, the TensorRT-friendly form) is only partly fused into QLinearConv on the "
        "CPU, so it gains little there; U8S8 (uint8 activations) is fused throughout. A package meant for ONNX "
        "Runtime on CPUs wants the U8S8 flavour; TensorRT wants S8S8.",
        "",
        "## `fakedet bench` table",
        "",
        "```",
        format_table(bench_report),
        "```",
        "",
        f"JSON: `{machine}.json` (schema fakedet.bench v{bench_report['schema_version']}, plus the headline under "
        f"`headline`); plot: `{machine}.png`.",
        "",
    ]
    from fakedet.atomic import atomic_write_text

    atomic_write_text(path, "\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--machine", default=re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()),
                    help="name of the results files (default: hostname)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fakedet" / "bench-headline"
    ap.add_argument("--work", type=Path, default=cache, help="cache for the built package (default: %(default)s)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calib", type=int, default=16, help="calibration images for INT8")
    ap.add_argument("--bench-batches", default="1,8")
    args = ap.parse_args(argv)
    args.load_start = os.getloadavg()[0]

    from fakedet.package import ModelPackage
    from fakedet.runtime.bench import BenchSettings, format_table, run_bench, validate_report
    from fakedet.runtime.bench.plot import write_plot

    pkg_dir = build_package(args.work, args.size, args.calib)
    log("headline: interleaved bare / fakedet fp32 / int8 (u8s8, s8s8) / torch")
    head = headline(pkg_dir, args.work, args.batch, args.threads, args.warmup, args.duration, args.repeats)
    head["fused_ops"] = {"u8s8": fused_ops(pkg_dir / "model.int8.onnx", args.threads),
                         "s8s8": fused_ops(args.work / S8S8_FILE, args.threads)}
    log("fakedet bench: torch, ort-cpu fp32/int8")
    settings = BenchSettings(backends=["torch", "ort-cpu"], precisions=["fp32", "int8"],
                             batches=[int(b) for b in args.bench_batches.split(",")], warmup_s=args.warmup / 2,
                             duration_s=args.duration / 2, repeats=args.repeats, threads=args.threads)
    with ModelPackage.open(pkg_dir) as pkg:
        report = run_bench(pkg, settings, progress=log)
    validate_report(report)
    report["headline"] = head
    RESULTS.mkdir(parents=True, exist_ok=True)
    from fakedet.atomic import atomic_write_text

    atomic_write_text(RESULTS / f"{args.machine}.json", json.dumps(report, indent=2) + "\n")
    write_plot(report, RESULTS / f"{args.machine}.png")
    write_markdown(RESULTS / f"{args.machine}.md", args.machine, head, report, args)
    print(format_table(report))
    print(json.dumps({k: v for k, v in head.items() if k != "throughput_img_s"}, indent=2))
    print(f"wrote {RESULTS / (args.machine + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
