"""`fakedet calibrate` as a function: calibration set -> ranges -> two QDQ INT8 models from
the same ranges (TensorRT: symmetric int8; ONNX Runtime CPU: uint8 activations, 7-bit
weights) + TensorRT cache -> accuracy guard (with mixed-precision fallback) on each -> CPU
speed check and the CPU the guard validated on -> artifacts added to the package atomically.

Everything is keyed: ranges by model hash + input spec + data digest + method (+ its
parameters, samples, seed); the whole result additionally by per-channel, the eval data,
the AUC budget and the cache format. A change of any recalibrates; equal keys reuse."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedet.artifact_kinds import CALIBRATION_REPORT, ONNX_FP32, ONNX_INT8_QDQ, TRT_CALIBRATION_CACHE
from fakedet.errors import FakedetError
from fakedet.onnx_graph import name_nodes
from fakedet.package import ModelPackage, PackageWriter, embed_manifest
from fakedet.tempdirs import owned_tempdir

from fakedet.runtime.cpu_tier import TIER_PROOF_WEIGHTS, cpu_record, kernel_vs_exact

from . import cpu_speed
from . import ranges as ranges_mod
from .dataset import load_set
from .files import CACHE_FILE, FIGURE_FILE, FP32_FILE, INT8_FILE, REPORT_FILE, TARGETS
from .evidence_guard import EvidenceDelta
from .fallback import Budgets, fallback
from .guard import compare
from .ort_run import logits_of
from .records import Built, CpuFacts
from .sensitivity import DEFAULT_BUDGET_S, rank_layer_groups
from .normalise import DEFAULT_METHOD as DEFAULT_NORMALISE
from .qdq import nonfinite_constant_readers, quantize_qdq
from .report import calibration_report, ort_version, score_figure
from .surgery import strip_qdq_on
from .tensorrt_cache import DEFAULT_TRT_VERSION, format_cache
from .source import Source, existing_package, open_source
from .text_tower import DEFAULT_TEXT_TOWER, TEXT_TOWER_CHOICES, TEXT_TOWER_WHY, TextTower, text_tower_of

log = logging.getLogger("fakedet.calibration")

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
    max_map_shift: float = 0.02  # mean |delta P| per region of an exported evidence map
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
    text_tower: str = DEFAULT_TEXT_TOWER  # caption-aware packages: fp32 keeps the text tower's nodes in float
    normalise: str = DEFAULT_NORMALISE  # --input-spec: graph normalisation of the bare ONNX (calibration/normalise.py)

    def budgets(self) -> Budgets:
        return Budgets(max_auc_drop=self.max_auc_drop, max_float_groups=self.max_float_layers,
                       max_score_shift=self.max_score_shift, max_map_shift=self.max_map_shift,
                       sensitivity_images=self.sensitivity_images,
                       sensitivity_seconds=self.sensitivity_budget)


@dataclass
class Result:
    dest: Path
    key: str
    reused: bool
    report: dict = field(default_factory=dict)


def _key(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _old_ranges(pkg: ModelPackage | None, ranges_key: str) -> tuple[dict | None, dict]:
    """(ranges, their notes) from the package's report when its ranges key matches, else (None, {})."""
    if pkg is None:
        return None, {}
    arts = [a for a in pkg.manifest.artifacts_of(CALIBRATION_REPORT) if a.file == REPORT_FILE]
    if not arts:
        return None, {}
    art = arts[0]
    try:
        pkg.verify_artifact(art)
        rep = json.loads((pkg.root / art.file).read_text(encoding="utf-8"))
    except (FakedetError, OSError, ValueError):
        return None, {}
    if rep.get("ranges_key") != ranges_key:
        return None, {}
    return {k: float(v) for k, v in rep.get("ranges", {}).items()}, rep.get("range_notes", {})


@dataclass
class _Ranges:
    named: object  # the FP32 model with every node named (onnx.ModelProto)
    path: Path  # ... saved
    amax: dict[str, float]
    notes: dict  # tensors kept in float for want of a range, min-max fallbacks
    reused: bool

    @property
    def no_range(self) -> dict:
        return self.notes.get("kept_float", {})


@dataclass
class _GuardSet:
    batches: list
    labels: np.ndarray | None  # held-out labels (None: no --eval-data)
    figure_labels: np.ndarray | None


def calibrate(source: str | Path, opts: Options, input_spec: str | Path | None = None, out: str | Path | None = None) -> Result:
    """The stages, top to bottom: open the source, load the data (a bad set fails before any
    model work), key the run (an identical one is reused), ranges, one QDQ model per target
    guarded on held-out data, the budgets, the CPU facts, the report, the package."""
    source = Path(source)
    if opts.text_tower not in TEXT_TOWER_CHOICES:
        raise ValueError(f"unknown text tower precision '{opts.text_tower}' (known: {', '.join(TEXT_TOWER_CHOICES)})")
    with owned_tempdir("fakedet-calibrate-") as work:  # removes those of killed runs first
        src = open_source(source, Path(input_spec) if input_spec else None, Path(out) if out else None, work,
                          opts.normalise)
        manifest, fp32_path, model_sha, base, dest = src.manifest, src.fp32, src.sha256, src.base, src.dest
        calib, eval_set = _load_data(opts, manifest, src.captions)
        params = ranges_mod.method_params(opts.method, opts.num_bins, opts.percentile)
        ranges_key, key = _keys(opts, src, calib, eval_set, params)
        # in place: the destination is the package already open (and its model.onnx verified)
        existing = base if base is not None and base.source.is_dir() and dest == base.source else existing_package(dest)
        if _up_to_date(existing, key, opts):
            existing.verify()
            return Result(dest, key, True, {"key": key})
        rng = _ranges(fp32_path, work, existing, ranges_key, calib, opts, params)
        tower = text_tower_of(rng.named, manifest, opts.text_tower)
        _warn_no_range(rng, tower)
        gs = _guard_set(calib, eval_set, opts)
        l32 = logits_of(rng.path, gs.batches, manifest.output)
        maps = EvidenceDelta(rng.path, gs.batches, manifest.evidence.name) if manifest.evidence is not None else None
        built = {target: _build_target(target, file, act, weights, rng, gs, l32, manifest, opts, work, tower, maps)
                 for target, file, act, weights in TARGETS}
        _enforce_budgets(built, opts, manifest.threshold.value)
        if maps is not None:  # how far each final INT8 map moves from FP32 (the fallback judged it)
            for target, b in built.items():
                b.guard["evidence_map"] = maps(b.model, exact=target == "tensorrt")
        speed = cpu_speed.measure(rng.named, built["ort-cpu"].model, gs.batches[0], opts.cpu_bench_seconds) \
            if opts.cpu_bench_seconds > 0 else None
        cpu = _cpu_facts(built["ort-cpu"], gs.batches)
        float_tensors = _float_tensors(rng.named, built["tensorrt"].guard, tower)
        attrs = {"calibration_key": key, "model_sha256": model_sha, "data_digest": calib.digest, "method": opts.method,
                 "samples": len(calib), "per_channel": opts.per_channel, "seed": opts.seed}  # fmt: skip
        report = calibration_report(key, ranges_key, rng, params, calib, eval_set, opts, model_sha, float_tensors, built, speed,
                                    cpu)  # fmt: skip
        if tower is not None:
            report["text_tower"] = {**built["tensorrt"].text_tower, "why": TEXT_TOWER_WHY[tower.precision]}
        nonfinite = nonfinite_constant_readers(rng.named)
        if nonfinite:
            report["quantization"]["float_nodes"] = {n: f"reads {t}, a constant with infinities or NaNs (a mask)"
                                                     for n, t in nonfinite.items()}  # fmt: skip
        _write_package(dest, base, manifest, fp32_path, built, attrs, report, rng, float_tensors, l32, gs, speed,
                       cpu, opts)  # fmt: skip
        return Result(dest, key, False, report)


def _load_data(opts: Options, manifest, captions):
    """(calibration set, held-out set or None); a caption-aware package's with their captions."""
    eval_set = None
    if opts.eval_data is not None:
        eval_set = load_set(opts.eval_data, manifest.input, opts.eval_samples, opts.seed, True, "evaluation", opts.progress,
                            captions)  # fmt: skip
    calib = load_set(opts.data, manifest.input, opts.samples, opts.seed, False, "calibration", opts.progress, captions)
    return calib, eval_set


def _keys(opts: Options, src: Source, calib, eval_set, params: dict) -> tuple[str, str]:
    """(ranges key, whole-result key): a change of anything they cover recalibrates."""
    manifest = src.manifest
    text = src.captions.key_fields()  # the captions' tokens are data too (image-only: nothing, keys unchanged)
    ranges_inputs = {
        "algo": ALGO_VERSION,
        "model_sha256": src.sha256,
        "input": manifest.input.to_dict(),
        **text,
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
            "onnxruntime": ort_version(),
            **({"text_tower": opts.text_tower} if text else {}),
        }
    )
    return ranges_key, key


def _up_to_date(existing: ModelPackage | None, key: str, opts: Options) -> bool:
    olds = existing.manifest.artifacts_of(ONNX_INT8_QDQ) if existing else []
    return bool(olds) and len(olds) == len(TARGETS) and all(a.attrs.get("calibration_key") == key for a in olds) \
        and not opts.force


def _ranges(fp32_path: Path, work: Path, existing, ranges_key: str, calib, opts: Options, params: dict) -> _Ranges:
    """Activation ranges of the node-named FP32 model: reused from the package when their key matches."""
    import onnx

    named = onnx.load(str(fp32_path))
    name_nodes(named)
    named_path = work / "fp32.named.onnx"
    onnx.save(named, str(named_path))
    amax, notes = (None, {}) if opts.force else _old_ranges(existing, ranges_key)
    reused = amax is not None
    if not reused:
        amax = ranges_mod.compute_ranges(named_path, calib.batches(opts.batch_size), opts.method, params,
                                         opts.progress, notes=notes)  # fmt: skip
    return _Ranges(named, named_path, amax, notes, reused)


def _warn_no_range(rng: _Ranges, tower: TextTower | None) -> None:
    """Name the tensors kept in float for want of a range (those of a float text tower go unsaid)."""
    quiet = tower.float_tensors(rng.named) if tower else set()
    said = {t: why for t, why in rng.no_range.items() if t not in quiet}
    if said:
        shown = ", ".join(f"{t} ({why})" for t, why in list(said.items())[:3])
        log.warning("%d tensor(s) cannot be calibrated and stay in float: %s%s (all in %s)", len(said), shown,
                    ", ..." if len(said) > 3 else "", REPORT_FILE)  # fmt: skip


def _guard_set(calib, eval_set, opts: Options) -> _GuardSet:
    """The images the guard compares FP32 and INT8 on: the held-out set, else the calibration set."""
    if eval_set is not None:
        return _GuardSet(list(eval_set.batches(opts.batch_size)), eval_set.labels, eval_set.labels)
    log.warning("no --eval-data: accuracy guard skipped; INT8 fidelity is measured on the calibration images")
    lab = calib.labels
    return _GuardSet(list(calib.batches(opts.batch_size)), None, lab if set(np.unique(lab)) == {0, 1} else None)


def _build_target(target: str, file: str, act: str, weights: str, rng: _Ranges, gs: _GuardSet, l32, manifest,
                  opts: Options, work: Path, tower: TextTower | None = None,
                  maps: EvidenceDelta | None = None) -> Built:
    """One QDQ model from the shared ranges, guarded (with the mixed-precision fallback) on held-out data."""
    thr = manifest.threshold.value
    # tensors without a range get a placeholder (ORT insists on one), then lose their Q/DQ
    qdq = quantize_qdq(rng.path, {**dict.fromkeys(rng.no_range, 1.0), **rng.amax}, opts.per_channel,
                       work / f"qdq-{target}.onnx", activations=act, weights=weights,
                       float_nodes=tower.float_nodes if tower else ())  # fmt: skip
    strip_qdq_on(qdq, rng.no_range, rng.named)
    exact = target == "tensorrt"
    if gs.labels is not None:
        map_shift = None
        if maps is not None:
            def map_shift(model):
                delta = maps(model, exact=exact)
                return None if delta is None else delta["mean_abs_dp"]
        model, guard, l8 = fallback(qdq, rng.named, gs.batches, gs.labels, l32, manifest.output, thr, opts.budgets(),
                                    opts.progress, exact=exact, map_shift=map_shift)  # fmt: skip
        if opts.sensitivity and not guard["sensitivity"]:
            guard["sensitivity"], guard["sensitivity_search"] = rank_layer_groups(
                qdq, rng.named, gs.batches, l32, gs.labels, manifest.output, opts.progress, opts.sensitivity_budget,
                exact)
    else:
        model, l8 = qdq, logits_of(qdq, gs.batches, manifest.output, exact)
        guard = {"skipped": "no --eval-data", "kept_float": [], "passed": None, "shift_passed": None,
                 "fidelity_on_calibration_set": compare(gs.figure_labels, l32, l8, thr)}  # fmt: skip
    guard["arithmetic"] = "exact quantization arithmetic" if exact else "onnxruntime CPU kernels"
    # l8: the final model's logits on the guard set (the TensorRT one's go in the figure)
    return Built(target, file, act, weights, model, guard, l8, tower.record(model) if tower else None)


def _enforce_budgets(built: dict[str, Built], opts: Options, thr: float) -> None:
    """The AUC budget fails the run; the score-shift budget warns (fails with --strict)."""
    for target, b in built.items():
        g = b.guard
        if g.get("passed") is False:
            f = g["final"]
            raise GuardFailed(
                f"INT8 ({b.file}, {target}) AUC drop {f['auc_drop']:.4f} stays above --max-auc-drop "
                f"{opts.max_auc_drop} even with {len(g['kept_float'])} layer group(s) in float; nothing was written "
                f"(try --method percentile/mse, more --samples, or a larger --max-float-layers)"
            )
    for target, b in built.items():
        g = b.guard
        if g.get("shift_passed") is False:
            f = g["final"]
            region = f.get("map_shift")
            msg = (f"INT8 ({b.file}, {target}) shifts scores by mean |dP| {f['shift']['mean_abs_dp']:.4f} "
                   f"(--max-score-shift {opts.max_score_shift})"
                   + (f" and evidence-map regions by {region:.4f} (--max-map-shift {opts.max_map_shift})"
                      if region is not None else "")
                   + f", over budget even with the fallback (decision agreement at {thr}: "
                   f"{f['shift']['decision_agreement']:.3f})")  # fmt: skip
            if opts.strict:
                raise GuardFailed(msg + "; --strict: nothing was written")
            log.warning("WARNING: %s; written anyway (--strict makes this an error)", msg)
            g["warning"] = msg


def _cpu_facts(cpu: Built, batches) -> CpuFacts:
    """The CPU the guard validated on; how far the CPU artifact's kernels stray from the exact
    arithmetic here and whether its weight form is tier-proof."""
    cpu_bytes = cpu.model.SerializeToString()
    return CpuFacts(validated_cpu=cpu_record(),
                    kernels_vs_exact=max(kernel_vs_exact(cpu_bytes, b) for b in batches[:4]),
                    tier_proof=cpu.weights in TIER_PROOF_WEIGHTS)


def _float_tensors(named, guard: dict, tower: TextTower | None = None) -> set[str]:
    """Outputs of the layer groups the TensorRT artifact keeps in float, and a float text
    tower's own tensors (left out of the cache)."""
    float_nodes = {n for g in guard["kept_float"] for n in g["nodes"]}
    return {t for n in named.graph.node if n.name in float_nodes for t in n.output} | \
        (tower.float_tensors(named) if tower else set())  # fmt: skip


def _write_package(dest, base, manifest, fp32_path, built, attrs, report, rng: _Ranges, float_tensors, l32,
                   gs: _GuardSet, speed, cpu: CpuFacts, opts: Options) -> None:
    """Every artifact in one atomic package write."""
    import onnx

    cache_ranges = {k: v for k, v in rng.amax.items() if k not in float_tensors}
    out_manifest = base.manifest.copy() if base is not None else manifest.copy()
    with PackageWriter(dest, out_manifest, base=base) as w:
        if base is None:
            w.add_file(fp32_path, FP32_FILE, ONNX_FP32)
        for target, b in built.items():
            embed_manifest(b.model, out_manifest, ONNX_INT8_QDQ)
            onnx.save(b.model, str(w.staged_path(b.file)))
            extra = {}
            if target == "ort-cpu":
                extra = {"validated_cpu": cpu.validated_cpu, "tier_proof": cpu.tier_proof,
                         "kernels_vs_exact": round(cpu.kernels_vs_exact, 6)}  # fmt: skip
            if b.text_tower is not None:
                extra["text_tower"] = b.text_tower
            if target == "ort-cpu" and speed is not None:
                extra.update(cpu_speedup=round(speed["speedup"], 3), cpu_speedup_measured_on=speed["measured_on"])
            w.add_file(None, b.file, ONNX_INT8_QDQ, **attrs, target=target, activations=b.activations,
                       weights=b.weights, kept_float=report["artifacts"][b.file]["kept_float"], **extra)  # fmt: skip
        w.staged_path(CACHE_FILE).write_text(format_cache(cache_ranges, opts.trt_version, opts.trt_calibrator))
        w.add_file(None, CACHE_FILE, TRT_CALIBRATION_CACHE, **attrs, trt_version=opts.trt_version,
                   calibrator=opts.trt_calibrator)  # fmt: skip
        score_figure(w.staged_path(FIGURE_FILE), l32, built["tensorrt"].l8, gs.figure_labels,
                     f"{manifest.name}: FP32 vs INT8 {INT8_FILE} ({opts.method})")  # fmt: skip
        w.staged_path(REPORT_FILE).write_text(json.dumps(report, indent=2, default=float) + "\n")
        w.add_file(None, REPORT_FILE, CALIBRATION_REPORT, **attrs, figure=FIGURE_FILE)
        w.add_file(None, FIGURE_FILE, CALIBRATION_REPORT, format="png", report=REPORT_FILE)
