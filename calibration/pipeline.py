"""`fakedet calibrate` as a function: calibration set -> ranges -> two QDQ INT8 models from
the same ranges (TensorRT: symmetric int8; ONNX Runtime CPU: uint8 activations) + TensorRT
cache -> accuracy guard (with mixed-precision fallback) on each -> CPU speed check ->
artifacts added to the package atomically.

Everything is keyed: ranges by model hash + input spec + data digest + method (+ its
parameters, samples, seed); the whole result additionally by per-channel, the eval data,
the AUC budget and the cache format. A change of any recalibrates; equal keys reuse."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedet.atomic import sha256_file
from fakedet.errors import FakedetError, PackageError
from fakedet.manifest import Manifest
from fakedet.package import ModelPackage, PackageWriter, embed_manifest

from . import cpu_speed
from . import ranges as ranges_mod
from .dataset import load_set
from .guard import compare, fallback, logits_of
from .sensitivity import DEFAULT_BUDGET_S, rank_layer_groups
from .qdq import quantize_qdq
from .report import score_figure
from .surgery import name_nodes
from .trt_cache import DEFAULT_TRT_VERSION, format_cache

log = logging.getLogger("fakedet.calibration")

INT8_FILE = "model.int8.onnx"
INT8_CPU_FILE = "model.int8-cpu.onnx"
# (target attr, file, activation type): the TensorRT one first (older readers take the first QDQ)
TARGETS = (("tensorrt", INT8_FILE, "int8"), ("ort-cpu", INT8_CPU_FILE, "uint8"))
CACHE_FILE = "calibration.cache"
REPORT_FILE = "calibration.json"
FIGURE_FILE = "calibration.png"
FP32_FILE = "model.onnx"
ALGO_VERSION = "fakedet-calibration-1"


class GuardFailed(FakedetError):
    """INT8 stayed outside the AUC budget (or, with --strict, the score-shift budget) even
    with the fallback; nothing was written."""

    exit_code = 1


@dataclass
class Options:
    data: Path
    method: str = "percentile"
    samples: int = 256
    per_channel: bool = True
    eval_data: Path | None = None
    max_auc_drop: float = 0.005
    max_score_shift: float = 0.05  # mean |P_int8 - P_fp32| on held-out data
    strict: bool = False  # a missed score-shift budget fails like a missed AUC budget
    cpu_bench_seconds: float = 2.5  # FP32 vs CPU INT8 timing; 0 skips it
    seed: int = 0
    force: bool = False
    num_bins: int = ranges_mod.DEFAULT_NUM_BINS
    percentile: float = ranges_mod.DEFAULT_PERCENTILE
    eval_samples: int | None = None
    trt_version: int = DEFAULT_TRT_VERSION
    trt_calibrator: str = "entropy2"
    max_float_layers: int = 8
    sensitivity_images: int | None = 32  # held-out images the per-layer ranking runs on
    sensitivity: bool = False  # run the per-layer analysis even when the guard passes
    sensitivity_budget: float | None = DEFAULT_BUDGET_S  # seconds of exact per-layer measurement, per INT8 flavour
    batch_size: int = 8
    progress: bool = True


@dataclass
class Result:
    dest: Path
    key: str
    reused: bool
    report: dict = field(default_factory=dict)


def _key(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _open_source(source: Path, input_spec: Path | None, out: Path | None, work: Path):
    """(manifest, fp32 path, its sha256, base package or None, destination)."""
    if input_spec is not None:
        import onnx

        from fakedet.spec_file import load_spec_file

        if source.suffix.lower() != ".onnx" or not source.is_file():
            raise PackageError(source, "--input-spec wraps a bare .onnx file; this is not one")
        spec = load_spec_file(input_spec)
        manifest = Manifest(
            name=spec.name or source.stem,
            architecture=spec.architecture or "unknown",
            input=spec.input,
            output=spec.output,
            threshold=spec.threshold,
            provenance={"source_onnx": source.name, "wrapped_by": "fakedet calibrate --input-spec"},
        )
        try:
            model = onnx.load(str(source))
        except Exception as e:
            raise PackageError(source, f"not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
        embed_manifest(model, manifest, "onnx-fp32")
        fp32 = work / FP32_FILE
        onnx.save(model, str(fp32))
        return manifest, fp32, sha256_file(fp32), None, out or source.with_suffix(".fdet")
    pkg = ModelPackage.open(source)
    art = pkg.manifest.artifact("onnx-fp32")
    if art is None:
        raise PackageError(source, "has no onnx-fp32 artifact to calibrate (fakedet export writes one)")
    fp32 = pkg.path_of(art)  # verifies its sha256: the recorded one is the file's
    if out is None:
        if not pkg.source.is_dir():
            raise PackageError(source, "is not a package directory; give -o NAME.fdet for the calibrated package")
        out = pkg.source
    return pkg.manifest, fp32, art.sha256, pkg, out


def _existing(dest: Path) -> ModelPackage | None:
    try:
        return ModelPackage.open(dest) if dest.is_dir() else None
    except FakedetError:
        return None


def _old_ranges(pkg: ModelPackage | None, ranges_key: str) -> dict | None:
    if pkg is None:
        return None
    arts = [a for a in pkg.manifest.artifacts_of("calibration-report") if a.file == REPORT_FILE]
    if not arts:
        return None
    art = arts[0]
    try:
        pkg.verify_artifact(art)
        rep = json.loads((pkg.root / art.file).read_text(encoding="utf-8"))
    except (FakedetError, OSError, ValueError):
        return None
    if rep.get("ranges_key") != ranges_key:
        return None
    return {k: float(v) for k, v in rep.get("ranges", {}).items()}


def calibrate(source: str | Path, opts: Options, input_spec: str | Path | None = None, out: str | Path | None = None) -> Result:
    import onnx

    source = Path(source)
    with tempfile.TemporaryDirectory(prefix="fakedet-calibrate-") as tmp:
        work = Path(tmp)
        manifest, fp32_path, model_sha, base, dest = _open_source(
            source, Path(input_spec) if input_spec else None, Path(out) if out else None, work
        )
        params = ranges_mod.method_params(opts.method, opts.num_bins, opts.percentile)
        # data first: a bad set fails here, before any model work
        eval_set = None
        if opts.eval_data is not None:
            eval_set = load_set(opts.eval_data, manifest.input, opts.eval_samples, opts.seed, True, "evaluation", opts.progress)
        calib = load_set(opts.data, manifest.input, opts.samples, opts.seed, False, "calibration", opts.progress)
        ranges_inputs = {
            "algo": ALGO_VERSION,
            "model_sha256": model_sha,
            "input": manifest.input.to_dict(),
            "data_digest": calib.digest,
            "method": opts.method,
            "params": params,
            "samples": opts.samples,
            "seed": opts.seed,
        }
        ranges_key = _key(ranges_inputs)
        key = _key(
            {
                **ranges_inputs,
                "ranges_key": ranges_key,
                "per_channel": opts.per_channel,
                "eval_digest": eval_set.digest if eval_set else None,
                "max_auc_drop": opts.max_auc_drop if eval_set else None,
                "max_score_shift": opts.max_score_shift if eval_set else None,
                "strict": opts.strict if eval_set else None,
                "targets": [list(t) for t in TARGETS],
                "max_float_layers": opts.max_float_layers,
                "sensitivity_images": opts.sensitivity_images,
                "sensitivity_budget": opts.sensitivity_budget,
                "trt": [opts.trt_version, opts.trt_calibrator],
                "output": manifest.output.to_dict(),
                "threshold": manifest.threshold.value,
                "onnxruntime": _ort_version(),
            }
        )
        # in place: the destination is the package already open (and its model.onnx verified)
        existing = base if base is not None and base.source.is_dir() and dest == base.source else _existing(dest)
        olds = existing.manifest.artifacts_of("onnx-int8-qdq") if existing else []
        if olds and len(olds) == len(TARGETS) and all(a.attrs.get("calibration_key") == key for a in olds) and not opts.force:
            existing.verify()
            return Result(dest, key, True, {"key": key})

        # ---- ranges ----------------------------------------------------------------
        named = onnx.load(str(fp32_path))
        name_nodes(named)
        named_path = work / "fp32.named.onnx"
        onnx.save(named, str(named_path))
        amax = None if opts.force else _old_ranges(existing, ranges_key)
        ranges_reused = amax is not None
        if not ranges_reused:
            amax = ranges_mod.compute_ranges(named_path, calib.batches(opts.batch_size), opts.method, params, opts.progress)

        # ---- QDQ (one per target, same ranges) + guard on each -----------------------
        thr = manifest.threshold.value
        if eval_set is not None:
            batches = list(eval_set.batches(opts.batch_size))
            labels = fig_labels = eval_set.labels
        else:
            log.warning("no --eval-data: accuracy guard skipped; INT8 fidelity is measured on the calibration images")
            batches = list(calib.batches(opts.batch_size))
            lab = calib.labels
            labels, fig_labels = None, (lab if set(np.unique(lab)) == {0, 1} else None)
        l32 = logits_of(named_path, batches, manifest.output)
        built: dict[str, dict] = {}
        for target, file, act in TARGETS:
            qdq = quantize_qdq(named_path, amax, opts.per_channel, work / f"qdq-{target}.onnx", activations=act)
            if eval_set is not None:
                model, guard, l8 = fallback(
                    qdq, named, batches, labels, l32, manifest.output, thr, opts.max_auc_drop, opts.max_float_layers,
                    opts.progress, opts.sensitivity_images, opts.max_score_shift, opts.sensitivity_budget,
                )
                if opts.sensitivity and not guard["sensitivity"]:
                    guard["sensitivity"], guard["sensitivity_search"] = rank_layer_groups(
                        qdq, named, batches, l32, labels, manifest.output, opts.progress, opts.sensitivity_budget)
            else:
                model, l8 = qdq, logits_of(qdq, batches, manifest.output)
                guard = {"skipped": "no --eval-data", "kept_float": [], "passed": None, "shift_passed": None,
                         "fidelity_on_calibration_set": compare(fig_labels, l32, l8, thr)}  # fmt: skip
            # l8: the final model's logits on `batches` (the TensorRT one's go in the figure)
            built[target] = {"file": file, "activations": act, "model": model, "guard": guard, "l8": l8}
        for target, b in built.items():
            g = b["guard"]
            if g.get("passed") is False:
                f = g["final"]
                raise GuardFailed(
                    f"INT8 ({b['file']}, {target}) AUC drop {f['auc_drop']:.4f} stays above --max-auc-drop "
                    f"{opts.max_auc_drop} even with {len(g['kept_float'])} layer group(s) in float; nothing was written "
                    f"(try --method percentile/mse, more --samples, or a larger --max-float-layers)"
                )
        for target, b in built.items():
            g = b["guard"]
            if g.get("shift_passed") is False:
                f = g["final"]
                msg = (f"INT8 ({b['file']}, {target}) shifts scores by mean |dP| {f['shift']['mean_abs_dp']:.4f}, above "
                       f"--max-score-shift {opts.max_score_shift} even with the fallback (decision agreement at "
                       f"{thr}: {f['shift']['decision_agreement']:.3f})")  # fmt: skip
                if opts.strict:
                    raise GuardFailed(msg + "; --strict: nothing was written")
                log.warning("WARNING: %s; written anyway (--strict makes this an error)", msg)
                g["warning"] = msg
        trt, cpu = built["tensorrt"], built["ort-cpu"]
        guard, l8 = trt["guard"], trt["l8"]
        speed = None
        if opts.cpu_bench_seconds > 0:
            speed = cpu_speed.measure(named, cpu["model"], batches[0], opts.cpu_bench_seconds)

        # ---- artifacts -------------------------------------------------------------
        float_nodes = {n for g in guard["kept_float"] for n in g["nodes"]}
        float_tensors = {t for n in named.graph.node if n.name in float_nodes for t in n.output}
        cache_ranges = {k: v for k, v in amax.items() if k not in float_tensors}
        attrs = {
            "calibration_key": key,
            "model_sha256": model_sha,
            "data_digest": calib.digest,
            "method": opts.method,
            "samples": len(calib),
            "per_channel": opts.per_channel,
            "seed": opts.seed,
        }
        report = {
            "key": key,
            "ranges_key": ranges_key,
            "ranges_reused": ranges_reused,
            "method": opts.method,
            "method_params": params,
            "samples": len(calib),
            "samples_asked": opts.samples,
            "seed": opts.seed,
            "per_channel": opts.per_channel,
            "model_sha256": model_sha,
            "data_digest": calib.digest,
            "calibration_data": calib.summary(),
            "eval_data": eval_set.summary() if eval_set else None,
            "quantization": {
                "library": f"onnxruntime {_ort_version()} quantize_static (QDQ)",
                "activations": (f"{INT8_FILE} (tensorrt): int8 symmetric, zero-point 0; {INT8_CPU_FILE} (ort-cpu): "
                                "uint8 asymmetric, zero-point 0 on tensors non-negative by construction (ReLU "
                                "outputs), 128 elsewhere; both from the same ranges"),
                "weights": f"int8 symmetric, {'per-channel' if opts.per_channel else 'per-tensor'}",
                "placement": (
                    "inputs and outputs of convs, relus, adds, pools (a conv output read only by a relu takes "
                    "the relu's range); one Q/DQ pair per consumer; none on the model's outputs"
                ),
            },
            "trt_cache": {
                "file": CACHE_FILE,
                "version": opts.trt_version,
                "calibrator": opts.trt_calibrator,
                "tensors": len(cache_ranges),
                "omitted_float_tensors": sorted(float_tensors & set(amax)),
            },
            "guard": guard,  # of the TensorRT artifact (model.int8.onnx); per artifact under "artifacts"
            "kept_float": [g["name"] for g in guard["kept_float"]],
            "artifacts": {
                b["file"]: {
                    "target": t,
                    "activations": b["activations"],
                    "guard": b["guard"],
                    "kept_float": [g["name"] for g in b["guard"]["kept_float"]],
                }
                for t, b in built.items()
            },
            "cpu_speed": speed,
            "ranges": amax,
        }
        out_manifest = base.manifest.copy() if base is not None else manifest.copy()
        with PackageWriter(dest, out_manifest, base=base) as w:
            if base is None:
                w.add_file(fp32_path, FP32_FILE, "onnx-fp32")
            for target, b in built.items():
                embed_manifest(b["model"], out_manifest, "onnx-int8-qdq")
                onnx.save(b["model"], str(w.staged_path(b["file"])))
                extra = {}
                if target == "ort-cpu" and speed is not None:
                    extra = {"cpu_speedup": round(speed["speedup"], 3), "cpu_speedup_measured_on": speed["measured_on"]}
                w.add_file(None, b["file"], "onnx-int8-qdq", **attrs, target=target, activations=b["activations"],
                           kept_float=report["artifacts"][b["file"]]["kept_float"], **extra)  # fmt: skip
            w.staged_path(CACHE_FILE).write_text(format_cache(cache_ranges, opts.trt_version, opts.trt_calibrator))
            w.add_file(None, CACHE_FILE, "trt-calibration-cache", **attrs, trt_version=opts.trt_version,
                       calibrator=opts.trt_calibrator)  # fmt: skip
            score_figure(w.staged_path(FIGURE_FILE), l32, l8, fig_labels,
                         f"{manifest.name}: FP32 vs INT8 {INT8_FILE} ({opts.method})")  # fmt: skip
            w.staged_path(REPORT_FILE).write_text(json.dumps(report, indent=2, default=float) + "\n")
            w.add_file(None, REPORT_FILE, "calibration-report", **attrs, figure=FIGURE_FILE)
            w.add_file(None, FIGURE_FILE, "calibration-report", format="png", report=REPORT_FILE)
        return Result(dest, key, False, report)
