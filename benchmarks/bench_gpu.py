"""Measure fakedet's GPU targets on this machine, in one run.

On the GPU machine (NVIDIA driver, TensorRT with trtexec, PyTorch with CUDA; ONNX
Runtime may be the CPU build, its GPU rows are then listed as skipped):

    make venv && .venv/bin/pip install tensorrt cuda-python && .venv/bin/python benchmarks/bench_gpu.py --machine h100

Where one command may run at most 10 minutes, split it (same --work: the bench stage
measures the plans the build stage left there):

    .venv/bin/python benchmarks/bench_gpu.py --machine h100 --work build/bench-gpu --stage build
    .venv/bin/python benchmarks/bench_gpu.py --machine h100 --work build/bench-gpu --stage bench

On a machine with no package index (the image's python3 has torch, onnx, onnxruntime,
cuda-bindings, matplotlib, but no TensorRT): `python3 -m pip install --no-deps
--no-build-isolation -e .` first; carry onnxconverter-common's wheel for model.fp16.onnx
(without it the package has none, which only TensorRT 11 needs). The TensorRT rows are
then skipped with the reason and the torch rows still run.

trtexec does not come with the pip wheels: it is found on PATH or in /usr/src/tensorrt/bin
(NVIDIA's TensorRT containers, JetPack, the tarball's bin/); else pass --trtexec PATH.
cuda-python's major must not be newer than the driver's CUDA (on a CUDA 12 driver:
pip install 'cuda-python<13'); the venv's torch must be a CUDA build the driver runs,
else the torch rows are skipped with that reason. onnxruntime-gpu is optional (the
ort-trt / ort-cuda rows).
Time: about 12 minutes the first time on one GPU (the three TensorRT builds take 3-5 of
them; ~35 rows of ~7 s, trtexec ~10 s beside each of the 18 TensorRT rows); plans are
reused afterwards.

Steps:
  1. The ResNet-50 package of benchmarks/bench_headline.py (built once under --work),
     repackaged once as resnet50-gpu.fdet: model.onnx (onnx-fp32), model.fp16.onnx
     (fakedet.export.fp16.to_fp16), model.int8.onnx (QDQ S8S8, target tensorrt),
     model.int8-cpu.onnx (QDQ U8S8, target ort-cpu); the checkpoint for the torch row.
  2. `fakedet build` for fp32, fp16, int8 (profile --plan-batch, default 1:8:32; timing
     cache under --work). A plan of that precision and profile that still runs here is
     reused unless --rebuild. A failed build is listed as skipped with its reason.
  3. `fakedet bench` (in-process) over tensorrt, ort-trt, ort-cuda, torch x fp32, fp16,
     int8 x batches 1, 8, 32, with trtexec on each TensorRT plan; then a second pass,
     TensorRT only, with CUDA graphs (rows labelled tensorrt-cudagraph).
  4. benchmarks/results/<machine>-gpu.json, .png, .md: the table, and the targets
       TensorRT backend >= 0.95x trtexec's throughput on the same plan and batch;
       TensorRT FP16 >= 5x PyTorch eager FP32 (same batch, same GPU).

Every piece that is missing (TensorRT, a CUDA provider, torch CUDA, trtexec) is
reported with its reason and the run goes on. If no GPU row at all was measured, the
script exits 2 with one line saying why and writes nothing into benchmarks/results
(with --out DIR it still writes its .json/.md there, for inspection).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_headline as hl  # the CPU headline script: its package and quantizer
from fakedet.errors import first_line

GPU_PKG = "resnet50-gpu.fdet"
FP16_FILE = "model.fp16.onnx"
INT8_TRT_FILE = "model.int8.onnx"
INT8_CPU_FILE = "model.int8-cpu.onnx"
GPU_BACKENDS = ("tensorrt", "ort-trt", "ort-cuda", "torch")
GRAPH = "tensorrt-cudagraph"  # backend label of the second (CUDA graph) pass's rows
PARITY_MIN = 0.95  # fakedet tensorrt / trtexec throughput
FP16_VS_TORCH_MIN = 5.0  # tensorrt fp16 / torch eager fp32 throughput


def log(msg: str) -> None:
    print(f"[gpu-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- package -------------------------------------------------------------------
def build_gpu_package(work: Path, size: int, calib: int) -> Path:
    """resnet50-gpu.fdet under `work`, made once from bench_headline's package."""
    dest = work / GPU_PKG
    wanted = {"model.onnx", INT8_TRT_FILE, INT8_CPU_FILE}  # + FP16_FILE where onnxconverter-common is installed
    if (dest / "manifest.json").is_file():
        from fakedet.package import ModelPackage

        with ModelPackage.open(dest) as pkg:
            if wanted <= {a.file for a in pkg.manifest.artifacts}:
                log(f"reusing {dest}")
                return dest
    src_dir = hl.build_package(work, size, calib)  # also writes work / hl.S8S8_FILE

    from fakedet.package import ModelPackage, PackageWriter

    with ModelPackage.open(src_dir) as src:
        fp32 = src.path_of(src.manifest.artifact("onnx-fp32"))
        u8 = src.manifest.artifact("onnx-int8-qdq")
        u8_path = src.path_of(u8)
        manifest = src.manifest.copy()
        manifest.name, manifest.artifacts = "resnet50-gpu", []
        fp16 = make_fp16(fp32, work / FP16_FILE)
        if fp16 is None:
            manifest.provenance["fp16_onnx"] = "not made: onnxconverter-common is not installed (TensorRT 11 needs it)"
        qdq = {k: v for k, v in u8.attrs.items() if k not in ("activations", "target")}
        with PackageWriter(dest, manifest) as w:
            w.add_file(fp32, "model.onnx", "onnx-fp32", precision="fp32")
            if fp16 is not None:
                from fakedet.export.fp16 import ORT_CPU_DISABLED_OPTIMIZERS

                w.add_file(fp16, FP16_FILE, "onnx-fp16", precision="fp16",
                           converter="onnxconverter-common float16 (fakedet.export.fp16)",
                           ort_cpu_disabled_optimizers=list(ORT_CPU_DISABLED_OPTIMIZERS))
            w.add_file(work / hl.S8S8_FILE, INT8_TRT_FILE, "onnx-int8-qdq", **qdq, target="tensorrt",
                       activations="int8-symmetric")
            w.add_file(u8_path, INT8_CPU_FILE, "onnx-int8-qdq", **qdq, target="ort-cpu",
                       activations="uint8-asymmetric")
    if fp16 is not None:
        fp16.unlink()
    log(f"wrote {dest}")
    return dest


def make_fp16(fp32: Path, dest: Path) -> Path | None:
    """The mixed-precision FP16 ONNX (what TensorRT 11 builds fp16 plans from), or None with
    a log line where the converter is missing: TensorRT 8.5-10 build fp16 from model.onnx."""
    try:
        import onnxconverter_common  # noqa: F401  (fakedet.export.fp16 imports it lazily)
    except ImportError:
        log("onnxconverter-common is not installed: no model.fp16.onnx (TensorRT 11 would need it; "
            "8.5-10 build fp16 from model.onnx)")
        return None
    import onnx

    from fakedet.export.fp16 import to_fp16

    log("converting FP16 ONNX (fakedet.export.fp16.to_fp16)")
    onnx.save(to_fp16(onnx.load(str(fp32))), str(dest))
    return dest


# ---- TensorRT plans ----------------------------------------------------------------
def parse_plan_batch(text: str) -> tuple[int, int, int]:
    from fakedet.export.tensorrt_rules import parse_range

    return parse_range(text, "--plan-batch")


def reusable_plan(pkg_dir: Path, precision: str, batch_range: tuple[int, int, int]) -> str | None:
    """The package's plan of `precision` if it runs here and has this batch profile."""
    from fakedet.package import ModelPackage
    from fakedet.runtime.tensorrt_support import matching_plan

    with ModelPackage.open(pkg_dir) as pkg:
        plan, _ = matching_plan(pkg, precision)
        if plan is None:
            return None
        prof = (plan.attrs.get("profiles") or [{}])[0]
        have = tuple(prof.get(k, [None])[0] for k in ("min", "opt", "max"))
        return plan.file if have == tuple(batch_range) else None


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


def run_fakedet(argv: list[str]) -> tuple[int, str]:
    """`fakedet ARGV` in this process: (exit code, the error line it printed or '')."""
    from fakedet.cli import main

    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(_Tee(sys.stderr, buf)):
            rc = main(argv)
    except Exception as e:  # a crash inside the command costs this step only
        return 1, f"{type(e).__name__}: {first_line(e, 300)}"
    lines = [ln.strip() for ln in buf.getvalue().splitlines() if ln.strip()]
    err = next((ln.split("error:", 1)[1].strip() for ln in reversed(lines) if ln.startswith("fakedet: error:")), "")
    return rc, err or (lines[-1] if rc and lines else "")


def timing_cache_path(work: Path) -> Path:
    from fakedet.export.tensorrt_rules import TrtVersion, default_timing_cache
    from fakedet.runtime.tensorrt_support import detect_environment

    env = detect_environment()
    if env.usable:
        return Path(default_timing_cache(str(work), TrtVersion.parse(env.trt_version), env.compute_capability))
    return work / "trt-timing" / "unknown.cache"  # the build will say why TensorRT is not usable


def build_plans(pkg_dir: Path, precisions: list[str], batch_text: str, work: Path, rebuild: bool,
                may_build: bool = True) -> list[dict]:
    """One `fakedet build` per precision; a dict per precision: status built, reused, failed, or
    missing (no plan here and `may_build` False)."""
    batch_range = parse_plan_batch(batch_text)
    cache = timing_cache_path(work)
    out = []
    for p in precisions:
        plan = None if rebuild else reusable_plan(pkg_dir, p, batch_range)
        if plan:
            log(f"reusing {p} plan {plan}")
            out.append({"precision": p, "status": "reused", "plan": plan, "seconds": 0.0, "reason": None})
            continue
        if not may_build:
            out.append({"precision": p, "status": "missing", "plan": None, "seconds": 0.0,
                        "reason": f"no {p} plan with profile {batch_text} that runs here: run --stage build first"})
            continue
        log(f"fakedet build --precision {p} --batch {batch_text}")
        t0 = time.perf_counter()
        rc, err = run_fakedet(["build", str(pkg_dir), "--precision", p, "--batch", batch_text,
                               "--timing-cache", str(cache)])
        entry = {"precision": p, "status": "built" if rc == 0 else "failed", "plan": None,
                 "seconds": round(time.perf_counter() - t0, 1), "reason": None}
        if rc == 0:
            entry["plan"] = reusable_plan(pkg_dir, p, batch_range) or "(built, but no matching plan in the manifest)"
        else:
            entry["reason"] = err or f"fakedet build exited with code {rc}"
        out.append(entry)
    return out


# ---- what this machine has -------------------------------------------------------
def torch_cuda_problem() -> str | None:
    """None if PyTorch can run on a CUDA GPU here, else why not (one line)."""
    try:
        import torch
    except ImportError:
        return "torch: PyTorch is not installed here"
    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (CPU-only build)"
        return f"torch {torch.__version__}: torch.cuda.is_available() is False (built for CUDA {built})"
    return None


def machine_facts() -> dict:
    """GPU, driver, CUDA, TensorRT, ONNX Runtime, torch, trtexec: each None with a note when absent."""
    from fakedet.calibration.cpu_speed import cpu_model
    from fakedet.runtime.tensorrt_support import detect_environment
    from fakedet.runtime.bench.trtexec_command import find_trtexec

    f = {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu": cpu_model(),
         "cpu_count": os.cpu_count(), "python": platform.python_version(), "notes": []}
    env = detect_environment()
    f["tensorrt"], f["gpu"], f["compute_capability"] = env.trt_version, env.device_name, env.compute_capability
    f["notes"] += env.why_absent
    try:
        import torch

        f["torch"], f["torch_cuda"] = torch.__version__, torch.version.cuda
        f["torch_cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)  # eager "FP32" convs use TF32 if True
        if torch.cuda.is_available():
            f["gpu"] = torch.cuda.get_device_name(0)
            f["compute_capability"] = "{}.{}".format(*torch.cuda.get_device_capability(0))
    except ImportError:
        f["torch"] = f["torch_cuda"] = None
    problem = torch_cuda_problem()
    if problem:
        f["notes"].append(problem)
    f["driver"] = None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30, check=False)
            first = first_line(q.stdout) if q.returncode == 0 else ""
            if first:
                name, f["driver"], f["gpu_memory"] = (s.strip() for s in first.split(",")[:3])
                f["gpu"] = f["gpu"] or name
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            f["notes"].append(f"nvidia-smi failed: {e}")
    else:
        f["notes"].append("nvidia-smi not found")
    try:
        import onnxruntime as ort

        f["onnxruntime"], f["ort_providers"] = ort.__version__, ort.get_available_providers()
    except ImportError:
        f["onnxruntime"], f["ort_providers"] = None, []
    f["trtexec"] = find_trtexec()
    return f


# ---- the two bench passes --------------------------------------------------------
def run_passes(pkg_dir: Path, args, checkpoint: str | None, torch_problem: str | None) -> dict:
    """Pass 1: every GPU backend; pass 2: tensorrt with CUDA graphs. One merged report:
    pass-2 rows and skips are labelled GRAPH, its trtexec entries go under
    report["cuda_graph_pass"]["trtexec"]."""
    from fakedet.package import ModelPackage
    from fakedet.runtime.bench import BenchSettings, run_bench

    trtexec = None if args.trtexec == "none" else args.trtexec
    backends = [b for b in args.backends if not (b == "torch" and torch_problem)]
    common = {"precisions": args.precisions, "batches": args.batches, "warmup_s": args.warmup,
              "duration_s": args.duration, "repeats": args.repeats, "trtexec": trtexec}
    s1 = BenchSettings(backends=backends, checkpoint=checkpoint, **common)
    with ModelPackage.open(pkg_dir) as pkg:
        log(f"pass 1: {', '.join(backends)}")
        report = run_bench(pkg, s1, progress=log)
        report["settings"]["backends"] = list(args.backends)  # as asked; torch's absence is in skipped
        if "torch" in args.backends and torch_problem:
            report["skipped"] += [{"backend": "torch", "precision": p, "batch": None, "reason": torch_problem}
                                  for p in args.precisions]
        if "tensorrt" in args.backends and not args.no_cuda_graph:
            log("pass 2: tensorrt with CUDA graphs")
            s2 = BenchSettings(backends=["tensorrt"], cuda_graph=True, **common)
            r2 = run_bench(pkg, s2, progress=log)
            for item in r2["results"] + r2["skipped"]:
                item["backend"] = GRAPH
            report["results"] += r2["results"]
            report["skipped"] += r2["skipped"]
            report["notes"] += [f"cuda-graph pass: {n}" for n in r2["notes"]]
            report["cuda_graph_pass"] = {"settings": s2.to_dict(), "trtexec": r2.get("trtexec", [])}
    return report


# ---- targets (pure: a report dict in, rows out) -------------------------------------
def skip_reason(report: dict, backend: str, precision: str, batch: int | None = None) -> str:
    """Why `report` has no `backend` `precision` row (at `batch`, or at all)."""
    for s in report.get("skipped", []):
        if s["backend"] == backend and s["precision"] == precision and (batch is None or s["batch"] in (None, batch)):
            return s["reason"]
    if backend == GRAPH and "cuda_graph_pass" not in report:
        return "the CUDA-graph pass was not run"
    if backend not in (GRAPH, *report["settings"]["backends"]):
        return f"{backend} was not among this run's backends"
    if precision not in report["settings"]["precisions"]:
        return f"{precision} was not among this run's precisions"
    return "no row and no recorded reason"


def is_gpu_row(row: dict) -> bool:
    """Every backend here runs on the GPU except torch, which falls back to the CPU without CUDA."""
    return row["backend"] != "torch" or "cuda" in row["device"].lower()


def _index(report: dict) -> dict:
    return {(r["backend"], r["precision"], r["batch"]): r for r in report["results"]}


def _variants(report: dict) -> list[tuple[str, list]]:
    """(tensorrt label, its trtexec entries): plain pass, then the CUDA-graph pass if run."""
    out = [("tensorrt", report.get("trtexec") or [])]
    if "cuda_graph_pass" in report:
        out.append((GRAPH, report["cuda_graph_pass"].get("trtexec") or []))
    return out


def _target(kind, variant, precision, batch, value, threshold, reason=None, detail="") -> dict:
    status = "not measured" if value is None else ("met" if value >= threshold else "not met")
    return {"target": kind, "variant": variant, "precision": precision, "batch": batch, "value": value,
            "threshold": threshold, "status": status, "reason": reason, "detail": detail}


def parity_targets(report: dict) -> list[dict]:
    """fakedet tensorrt / trtexec on the same plan, per precision and batch."""
    idx, out = _index(report), []
    precisions, batches = report["settings"]["precisions"], report["settings"]["batches"]
    for variant, entries in _variants(report):
        by = {(e["precision"], e["batch"]): e for e in entries}
        for p in precisions:
            if not any((variant, p, b) in idx for b in batches):  # one line for a precision that never ran
                out.append(_target("trtexec", variant, p, None, None, PARITY_MIN, skip_reason(report, variant, p)))
                continue
            for b in batches:
                value, reason, detail = None, None, ""
                e = by.get((p, b))
                if (variant, p, b) not in idx:
                    reason = skip_reason(report, variant, p, b)
                elif e is None:
                    reason = ("trtexec comparison not requested" if not report["settings"].get("trtexec")
                              else "no trtexec entry for this row")
                elif e["error"]:
                    reason = e["error"]
                elif not e["trtexec_img_s"]:
                    reason = "trtexec reported no throughput"
                else:
                    value = e["fakedet_img_s"] / e["trtexec_img_s"]
                    detail = f"fakedet {e['fakedet_img_s']:.1f} / trtexec {e['trtexec_img_s']:.1f} img/s"
                out.append(_target("trtexec", variant, p, b, value, PARITY_MIN, reason, detail))
    return out


def fp16_targets(report: dict) -> list[dict]:
    """TensorRT FP16 / PyTorch eager FP32 (on the GPU), per batch."""
    idx, out = _index(report), []
    for variant, _ in _variants(report):
        for b in report["settings"]["batches"]:
            trt, ref = idx.get((variant, "fp16", b)), idx.get(("torch", "fp32", b))
            missing = []
            if trt is None:
                missing.append(f"{variant} fp16: {skip_reason(report, variant, 'fp16', b)}")
            if ref is None:
                missing.append(f"torch fp32: {skip_reason(report, 'torch', 'fp32', b)}")
            elif not is_gpu_row(ref):
                missing.append(f"torch fp32 ran on '{ref['device']}', not on the GPU")
            if missing:
                out.append(_target("fp16-vs-torch", variant, "fp16", b, None, FP16_VS_TORCH_MIN, "; ".join(missing)))
                continue
            t, r = trt["throughput_img_s"]["median"], ref["throughput_img_s"]["median"]
            out.append(_target("fp16-vs-torch", variant, "fp16", b, t / r, FP16_VS_TORCH_MIN,
                               detail=f"{variant} fp16 {t:.1f} / torch fp32 {r:.1f} img/s"))
    return out


def targets(report: dict) -> list[dict]:
    return parity_targets(report) + fp16_targets(report)


# ---- markdown (pure) ------------------------------------------------------------------
def _status_cell(t: dict) -> str:
    if t["status"] == "not measured":
        return f"not measured: {t['reason']}"
    return "met" if t["status"] == "met" else "**not met**"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def target_lines(rows: list[dict]) -> list[str]:
    lines = ["| target | engine | precision | batch | measured | ratio | status |",
             "| --- | --- | --- | ---: | --- | ---: | --- |"]
    for t in rows:
        name = (f"fakedet >= {PARITY_MIN:g}x trtexec (same plan)" if t["target"] == "trtexec"
                else f"TensorRT FP16 >= {FP16_VS_TORCH_MIN:g}x PyTorch eager FP32")
        ratio = "" if t["value"] is None else (f"{t['value']:.3f}" if t["target"] == "trtexec" else f"{t['value']:.2f}x")
        batch = "all" if t["batch"] is None else t["batch"]
        lines.append(f"| {name} | {t['variant']} | {t['precision']} | {batch} | {_cell(t['detail'])} | {ratio} | "
                     f"{_cell(_status_cell(t))} |")
    return lines


def method_text(report: dict) -> str:
    s, graphs = report["settings"], "cuda_graph_pass" in report
    text = (f"plans from `fakedet build PKG --precision P --batch {s.get('plan_batch', '?')}` (in-process); "
            f"`fakedet bench` over {', '.join(s['backends'])} x {', '.join(s['precisions'])} x batch "
            f"{', '.join(map(str, s['batches']))}: warm-up {s['warmup_s']:g} s, {s['repeats']} repeats of "
            f"{s['duration_s']:g} s, throughput = median of repeats; synthetic inputs, H2D/D2H included")
    if graphs:
        text += f"; then tensorrt again with CUDA graphs (`{GRAPH}` rows)"
    if s.get("trtexec"):
        text += ("; trtexec after fakedet's rows on the same plan, batch and shape (`--loadEngine --shapes`, "
                 "warm-up as above, duration = repeats x duration" + (", `--useCudaGraph` in the CUDA-graph pass"
                                                                      if graphs else "") + ")")
    return text


def render_markdown(machine: str, report: dict, facts: dict, builds: list[dict], target_rows: list[dict],
                    command: str) -> str:
    from fakedet.runtime.bench import format_table
    from fakedet.runtime.bench.trtexec import format_lines

    na = lambda v: "not found" if v in (None, "", []) else v  # noqa: E731
    lines = [
        f"# fakedet GPU benchmark: {machine}",
        "",
        f"- GPU: {na(facts.get('gpu'))} (compute capability {na(facts.get('compute_capability'))}"
        f"{', ' + facts['gpu_memory'] if facts.get('gpu_memory') else ''}); driver {na(facts.get('driver'))}; "
        f"CUDA (torch build) {na(facts.get('torch_cuda'))}",
        f"- TensorRT {na(facts.get('tensorrt'))}; trtexec {na(facts.get('trtexec'))}; onnxruntime "
        f"{na(facts.get('onnxruntime'))} (providers: {', '.join(facts.get('ort_providers') or []) or 'none'}); "
        f"torch {na(facts.get('torch'))}",
        f"- host: {facts.get('cpu')} ({facts.get('cpu_count')} logical cores), {facts.get('platform')}, "
        f"Python {facts.get('python')}",
        *[f"- note: {n}" for n in facts.get("notes", [])],
        *([f"- PyTorch eager reference with PyTorch's defaults: torch.backends.cudnn.allow_tf32 = "
           f"{facts['torch_cudnn_allow_tf32']}" + (" (its FP32 convolutions run as TF32 on Ampere and newer)"
                                                    if facts["torch_cudnn_allow_tf32"] else "")]
          if facts.get("torch_cudnn_allow_tf32") is not None else []),
        f"- model: ResNet-50 (fakedet.train.models 'resnet50', 1-logit head, random init: speed only), "
        f"package {report['package']['name']}",
        f"- method: {method_text(report)}",
        f"- command: `{command}`",
        "",
        "## TensorRT plans",
        "",
        "| precision | status | plan or reason | build s |",
        "| --- | --- | --- | ---: |",
        *[f"| {b['precision']} | {b['status']} | {_cell(b['plan'] or b['reason'] or '')} | {b['seconds']:.1f} |"
          for b in builds],
        "",
        "## Targets",
        "",
        *target_lines(target_rows),
        "",
        "## `fakedet bench` table",
        "",
        "```",
        format_table(report),
        *format_lines([{**e, "plan": f"{e['plan']}, CUDA graph"}
                       for e in report.get("cuda_graph_pass", {}).get("trtexec") or []]),
        "```",
        "",
        f"JSON: `{machine}-gpu.json` (schema fakedet.bench v{report['schema_version']}; plus `builds`, "
        f"`cuda_graph_pass`, `gpu_targets`, `gpu_facts`)"
        + (f"; plot: `{machine}-gpu.png`." if report["results"] else "; no plot (nothing measured)."),
        "",
    ]
    return "\n".join(lines)


# ---- main --------------------------------------------------------------------------
def _csv(kind):
    return lambda text: [kind(v.strip()) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--machine", default=re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()),
                    help="results are named <machine>-gpu.{json,png,md} (default: hostname)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fakedet" / "bench-headline"
    ap.add_argument("--work", type=Path, default=cache, help="cache for packages, plans, timing cache "
                                                             "(default: bench_headline's, %(default)s)")
    ap.add_argument("--out", type=Path, default=None, help=f"results folder (default: {RESULTS})")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--calib", type=int, default=16, help="calibration images for INT8 (package build only)")
    ap.add_argument("--plan-batch", default="1:8:32", help="TensorRT profile MIN:OPT:MAX (default: %(default)s)")
    ap.add_argument("--rebuild", action="store_true", help="build plans even where a matching one exists")
    ap.add_argument("--backends", type=_csv(str), default=list(GPU_BACKENDS), help="default: %(default)s")
    ap.add_argument("--precisions", type=_csv(str), default=["fp32", "fp16", "int8"], help="default: %(default)s")
    ap.add_argument("--batches", type=_csv(int), default=[1, 8, 32], help="default: %(default)s")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds per combination (default: %(default)s)")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per timed repeat (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trtexec", default="auto", help="auto (PATH, /usr/src/tensorrt/bin), a path, or none")
    ap.add_argument("--no-cuda-graph", action="store_true", help="skip the second (CUDA graph) TensorRT pass")
    ap.add_argument("--stage", choices=("all", "build", "bench"), default="all",
                    help="build: package and plans only; bench: measure with the plans already built "
                         "(two commands under a per-command time limit); default: %(default)s")
    return ap.parse_args(argv)


def nothing_measured_line(report: dict) -> str:
    why = []
    for backend in report["settings"]["backends"]:
        rows = [r for r in report["results"] if r["backend"] == backend]
        reasons = [s["reason"] for s in report["skipped"] if s["backend"] == backend]
        if rows:
            why.append(f"{backend}: ran on '{rows[0]['device']}', not on the GPU")
        elif reasons:
            text = reasons[0].split("; the package has")[0]
            why.append(f"{backend}: {text if len(text) <= 160 else text[:157] + '...'}")
    return "bench_gpu: no GPU row was measured (" + "; ".join(why) + ")"


def find_torch_checkpoint(pkg_dir: Path) -> tuple[str | None, str | None]:
    """(checkpoint for the torch rows, or None with why not)."""
    problem = torch_cuda_problem()
    if problem:
        return None, problem
    from fakedet.errors import FakedetError
    from fakedet.package import ModelPackage
    from fakedet.train.torch_backend import find_checkpoint

    with ModelPackage.open(pkg_dir) as pkg:
        try:
            return str(find_checkpoint(pkg).resolve()), None
        except FakedetError as e:
            return None, str(e)


def write_outputs(out: Path, args, report: dict, command: str) -> None:
    from fakedet.atomic import atomic_write_text
    from fakedet.runtime.bench.plot import write_plot

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{args.machine}-gpu.json", json.dumps(report, indent=2) + "\n")
    if report["results"]:
        write_plot(report, out / f"{args.machine}-gpu.png")
    atomic_write_text(out / f"{args.machine}-gpu.md", render_markdown(
        args.machine, report, report["gpu_facts"], report["builds"], report["gpu_targets"], command))
    log(f"wrote {out / (args.machine + '-gpu.md')}")


def main(argv=None) -> int:
    args = parse_args(argv)
    command = " ".join(["python", *sys.argv]) if argv is None else "bench_gpu.main(" + " ".join(argv) + ")"
    from fakedet.runtime.bench import format_table, validate_report
    from fakedet.runtime.selection import PRECISIONS

    bad = [p for p in args.precisions if p not in PRECISIONS] + [b for b in args.backends if b not in GPU_BACKENDS]
    if bad:
        print(f"bench_gpu: unknown precision/backend {', '.join(bad)} (precisions {', '.join(PRECISIONS)}; "
              f"backends {', '.join(GPU_BACKENDS)})", file=sys.stderr)
        return 2
    parse_plan_batch(args.plan_batch)  # a bad profile fails now, not after the package build

    facts = machine_facts()
    log(f"this machine: GPU {facts.get('gpu')}, TensorRT {facts.get('tensorrt')}, ORT providers "
        f"{','.join(facts['ort_providers'])}, trtexec {facts.get('trtexec')}, {torch_cuda_problem() or 'torch on CUDA'}")
    pkg_dir = build_gpu_package(args.work, args.size, args.calib)
    builds = []
    if "tensorrt" in args.backends:
        builds = build_plans(pkg_dir, args.precisions, args.plan_batch, args.work, args.rebuild,
                             may_build=args.stage != "bench")
    if args.stage == "build":
        ok = [b for b in builds if b["status"] in ("built", "reused")]
        for b in builds:
            print(f"{b['precision']}: {b['status']} {b['plan'] or b['reason']}")
        if not ok:
            print("bench_gpu: no TensorRT plan could be built (reasons above)", file=sys.stderr)
        return 0 if ok else 2

    checkpoint, torch_problem = find_torch_checkpoint(pkg_dir) if "torch" in args.backends else (None, None)
    report = run_passes(pkg_dir, args, checkpoint, torch_problem)
    # a missing plan is the reason its tensorrt rows are missing: list it first
    labels = ("tensorrt", GRAPH) if "cuda_graph_pass" in report else ("tensorrt",)
    report["skipped"] = [{"backend": v, "precision": b["precision"], "batch": None,
                          "reason": f"fakedet build: {b['reason']}"}
                         for b in builds if b["status"] in ("failed", "missing") for v in labels] + report["skipped"]
    report["settings"]["plan_batch"] = args.plan_batch
    report["builds"] = builds
    report["gpu_facts"] = facts
    report["gpu_targets"] = targets(report)
    validate_report(report)

    measured = any(is_gpu_row(r) for r in report["results"])
    if measured:  # else the one line below says it all; the .md (with --out) has the details
        print(format_table(report))
        for t in report["gpu_targets"]:
            value = "" if t["value"] is None else f" ({t['value']:.3f})"
            print(f"target {t['target']} {t['variant']} {t['precision']} batch {t['batch'] or 'all'}: "
                  f"{_status_cell(t)}{value}")
    out = args.out if args.out is not None else (RESULTS if measured else None)
    if out is not None:
        write_outputs(out, args, report, command)
    if not measured:
        print(nothing_measured_line(report) + ("" if out is not None else "; nothing written"), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
