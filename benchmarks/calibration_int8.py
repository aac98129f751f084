"""INT8 calibration benchmark: a ResNet-50 detector on the CPU with ONNX Runtime, batch 8.

Measured in one run, on the same model, calibration images and held-out images:
  fp32                FP32 ONNX
  fakedet-<method>    `fakedet calibrate` (calibration.pipeline.calibrate, the function the
                      CLI calls) for the default method and the other methods asked for
  ort-default         onnxruntime.quantization.quantize_static with everything as ORT ships it
                      (QDQ, uint8 activations, int8 per-tensor weights, MinMax)
  fakedet-<m>-cpu-<form>  the CPU flavour's candidate weight forms (--cpu-forms), quantized from
                      the default method's ranges with fakedet's placement, no fallback:
                      u8s8 = 8-bit int8 weights (saturates ORT's kernels on x86 without VNNI),
                      u8u8 = uint8 weights; the shipped form (7-bit int8) is fakedet-<m>-cpu
Per INT8 model also: max |logit| of ORT's kernels here against the exact quantization
arithmetic (the same model with graph optimizations off), and of that arithmetic against FP32.
Throughput: one session per model with intra-op threads = CPU cores, batch 8, models
interleaved repeat by repeat, median of repeats. Accuracy: AUC/AP on held-out images, AUC
drop in points, decision agreement at the threshold and mean |dP| against FP32. The graph ORT
really runs (session-optimized model) is counted per model: INT8 kernels vs float Conv.

The detector is made realistic without downloads (a random-init ResNet-50 has BatchNorm
running stats mean 0 / var 1, so its activations explode through the depth, which no trained
network does and which wrecks any INT8 calibration):
  1. torchvision resnet50, random init (seed 0);
  2. BatchNorm running statistics re-estimated on separate synthetic images (train mode,
     momentum=None = cumulative average, then eval);
  3. the 1-logit head fitted by logistic regression (sklearn) on the pooled features of
     training images: "real" = synthetic photographs-like scenes (multi-scale smooth fields,
     shapes, sensor grain), "fake" = other such scenes passed through a generator-like
     artifact (2x resample, blur or JPEG, with weaker grain);
  4. exported with torch.onnx (opset 17, dynamic batch), wrapped as a fakedet package.
Training, BN, calibration and held-out images are disjoint (different seeds).

    .venv/bin/python benchmarks/calibration_int8.py [--methods entropy,percentile,mse] [--calib 128] [--heldout 192]
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SIZE = 224
BATCH = 8


def log(msg: str) -> None:
    print(f"[calib-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- synthetic data -------------------------------------------------------------------


def scene(rng: np.random.Generator) -> np.ndarray:
    """A clean photograph-like scene: smooth fields at a few scales plus random shapes."""
    img = np.zeros((SIZE, SIZE, 3), np.float32)
    for cells, weight in ((4, 1.0), (12, 0.5), (32, 0.25)):
        low = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
        img += weight * np.asarray(Image.fromarray(low).resize((SIZE, SIZE), Image.Resampling.BICUBIC), np.float32)
    pil = Image.fromarray(np.clip(img / 1.75, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = rng.integers(0, SIZE - 20, 2)
        w, h = rng.integers(12, 90, 2)
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = [int(x0), int(y0), int(min(x0 + w, SIZE - 1)), int(min(y0 + h, SIZE - 1))]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return np.asarray(pil, np.float32)


def grain(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def real_image(rng: np.random.Generator) -> np.ndarray:
    return grain(scene(rng), rng, rng.uniform(3, 12))


def fake_image(rng: np.random.Generator) -> np.ndarray:
    """A scene through a generator-like artifact; the grain left on it overlaps the reals'."""
    pil = Image.fromarray(grain(scene(rng), rng, rng.uniform(0, 6)))
    kind = rng.integers(0, 3)
    if kind == 0:
        small = pil.resize((SIZE // 2, SIZE // 2), Image.Resampling.BILINEAR)
        pil = small.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    elif kind == 1:
        pil = pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.2))))
    else:
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=int(rng.integers(50, 80)))
        pil = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return grain(np.asarray(pil, np.float32), rng, rng.uniform(0, 3))


def write_set(root: Path, n_per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for label, make in (("0_real", real_image), ("1_fake", fake_image)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(make(rng)).save(root / label / f"{seed}_{i}.png")
    return root


# ---- detector ---------------------------------------------------------------------------


def build_detector(work: Path, spec, n_bn: int, n_train: int) -> dict:
    """BN-re-estimated random ResNet-50 with a fitted 1-logit head -> work/r50.onnx."""
    import torch
    import torchvision
    from sklearn.linear_model import LogisticRegression

    from fakedet.runtime.dataset_index import index_dataset
    from fakedet.runtime.preprocess import preprocess

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)

    def tensors(root):
        samples = index_dataset(root)
        return np.stack([preprocess(s.path, spec) for s in samples]), np.array([s.label for s in samples])

    model = torchvision.models.resnet50(weights=None)
    model.fc = torch.nn.Identity()
    xb, _ = tensors(write_set(work / "bn", n_bn // 2, seed=50))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        for i in range(0, len(xb), 16):
            model(torch.from_numpy(xb[i : i + 16]))
    model.eval()
    log(f"BatchNorm statistics re-estimated on {len(xb)} images")

    trunk_path = work / "trunk.onnx"
    _export(model, xb[:1], trunk_path, "features")
    xt, yt = tensors(write_set(work / "train", n_train // 2, seed=100))
    feats = _run(trunk_path, xt)
    # one global scale, not per feature: per-feature standardisation gives near-constant
    # features huge weights, which amplifies any quantization noise unlike a trained head
    mu, sd = feats.mean(0), float(feats.std())
    clf = LogisticRegression(C=0.05, max_iter=5000).fit((feats - mu) / sd, yt)
    train_acc = float(clf.score((feats - mu) / sd, yt))
    fc = torch.nn.Linear(2048, 1)
    with torch.no_grad():  # the feature standardisation folded into the head
        w = torch.from_numpy((clf.coef_[0] / sd).astype(np.float32))
        fc.weight.copy_(w[None])
        fc.bias.fill_(float(clf.intercept_[0] - (clf.coef_[0] * mu / sd).sum()))
    model.fc = fc
    _export(model, xb[:1], work / "r50.onnx", "logit")
    log(f"head fitted on {len(xt)} images (train accuracy {train_acc:.3f})")
    return {"bn_images": len(xb), "train_images": len(xt), "head_train_accuracy": train_acc}


def _export(model, example: np.ndarray, path: Path, out_name: str) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.from_numpy(example), str(path), input_names=["image"], output_names=[out_name],
                          dynamic_axes={"image": {0: "batch"}, out_name: {0: "batch"}}, opset_version=17, dynamo=False)  # fmt: skip


def session(path: Path, optimized_to: Path | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = os.cpu_count() or 1
    if optimized_to is not None:
        so.optimized_model_filepath = str(optimized_to)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    s = session(path)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i : i + BATCH]})[0] for i in range(0, len(x), BATCH)])


def executed_graph(path: Path, work: Path) -> dict:
    """Op counts of the graph ORT actually runs (its optimized model)."""
    import onnx

    out = work / f"{path.stem}.ort-optimized.onnx"
    session(path, out)
    return dict(collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node))


def throughput(paths: dict, batch: np.ndarray, repeats: int, iters: int) -> dict:
    """img/s per model: median over `repeats`, models interleaved within each repeat."""
    sess = {k: session(p) for k, p in paths.items()}
    feeds = {k: {s.get_inputs()[0].name: batch} for k, s in sess.items()}
    for k, s in sess.items():
        for _ in range(3):
            s.run(None, feeds[k])
    per = {k: [] for k in sess}
    for _ in range(repeats):
        for k, s in sess.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                s.run(None, feeds[k])
            per[k].append(iters * len(batch) / (time.perf_counter() - t0))
    return {k: {"median": float(np.median(v)), "min": float(min(v)), "max": float(max(v))} for k, v in per.items()}


def machine_id() -> tuple[str, str, list[str]]:
    from fakedet.runtime.cpu_tier import cpu_record

    rec = cpu_record()
    cpu = rec["model"]
    slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*", "", cpu.lower())).strip("-")
    return f"{slug}-{os.cpu_count()}core", cpu, rec["features"] + [f"tier {rec['tier']}"]


# ---- main -------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="percentile,entropy,mse", help="fakedet methods; the first is the default one")
    ap.add_argument("--bn", type=int, default=32, help="images for BatchNorm re-estimation")
    ap.add_argument("--train", type=int, default=192, help="images to fit the head")
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--heldout", type=int, default=192)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--iters", type=int, default=2, help="batches timed per repeat")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--machine", default=None)
    ap.add_argument("--max-score-shift", type=float, default=0.05,
                    help="calibrate's score-shift budget (1 = only the AUC budget engages the per-layer fallback)")
    ap.add_argument("--cpu-forms", default="u8s8,u8u8", help="other CPU-flavour weight forms to measure (or '')")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    from onnxruntime import __version__ as ort_version
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    from fakedet.calibration.dataset import load_set
    from fakedet.calibration.guard import score_shift
    from fakedet.calibration.ort_run import logits_of
    from fakedet.calibration.files import CPU_WEIGHTS
    from fakedet.calibration.pipeline import Options, calibrate
    from fakedet.calibration.qdq import quantize_qdq
    from fakedet.manifest import InputSpec, Manifest, OutputSpec, Preprocess
    from fakedet.package import ModelPackage, PackageWriter
    from fakedet.runtime.metrics import average_precision, roc_auc
    from fakedet.runtime.scoring import sigmoid

    t_start = time.time()
    load_start = os.getloadavg()
    machine, cpu, flags = machine_id()
    machine = args.machine or machine
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="fakedet-bench-calib-")
    work = args.work or Path(tmp.name)  # models and images (~0.5 GB); kept only with --work
    work.mkdir(parents=True, exist_ok=True)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    spec = InputSpec(name="image", preprocess=Preprocess(policy="center-crop", size=(SIZE, SIZE)))
    detector = build_detector(work, spec, args.bn, args.train)
    manifest = Manifest(name="r50-synthetic", architecture="resnet50", input=spec, output=OutputSpec(name="logit"))
    write_set(work / "calib", args.calib // 2, seed=200)
    write_set(work / "heldout", args.heldout // 2, seed=300)
    log(f"detector and data ready ({time.time() - t_start:.0f}s)")

    models: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    reports: dict[str, dict] = {}
    for method in methods:
        pkg_path = work / f"r50-{method}.fdet"
        with PackageWriter(pkg_path, manifest) as w:
            w.add_file(work / "r50.onnx", "model.onnx", "onnx-fp32")
        t0 = time.time()
        res = calibrate(pkg_path, Options(data=work / "calib", method=method, samples=args.calib,
                                          eval_data=work / "heldout", max_auc_drop=0.005,
                                          max_score_shift=args.max_score_shift, progress=True))  # fmt: skip
        seconds[f"fakedet-{method}"] = time.time() - t0
        reports[f"fakedet-{method}"] = res.report
        pkg = ModelPackage.open(pkg_path)
        models.setdefault("fp32", pkg.root / "model.onnx")
        models[f"fakedet-{method}"] = pkg.root / "model.int8.onnx"  # TensorRT flavour (symmetric int8)
        models[f"fakedet-{method}-cpu"] = pkg.root / "model.int8-cpu.onnx"  # ORT CPU flavour (uint8 activations)
        cpu_rep = res.report["artifacts"]["model.int8-cpu.onnx"]
        reports[f"fakedet-{method}-cpu"] = {**res.report, "kept_float": cpu_rep["kept_float"], "guard": cpu_rep["guard"]}
        log(f"fakedet calibrate --method {method}: {seconds[f'fakedet-{method}']:.0f}s, "
            f"kept float: {res.report['kept_float'] or 'none'}")  # fmt: skip

    form_weights = {"u8s8": "int8", "u8s8-7bit": "int8-7bit", "u8u8": "uint8"}
    for form in [f for f in args.cpu_forms.split(",") if f]:
        if form_weights[form] == CPU_WEIGHTS:
            continue
        name = f"fakedet-{methods[0]}-cpu-{form}"
        t0 = time.time()
        quantize_qdq(models["fp32"], reports[f"fakedet-{methods[0]}"]["ranges"], True, work / f"{name}.onnx",
                     activations="uint8", weights=form_weights[form])  # fmt: skip
        seconds[name], models[name] = time.time() - t0, work / f"{name}.onnx"

    calib = load_set(work / "calib", spec, args.calib, 0, False, "calibration", progress=False)
    calib_batches = list(calib.batches(BATCH))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"image": b} for b in calib_batches])

        def get_next(self):
            return next(self.it, None)

    root_logger = logging.getLogger()
    level, root_logger.level = root_logger.level, logging.ERROR  # its "consider pre-processing" warnings
    t0 = time.time()
    quantize_static(str(models["fp32"]), str(work / "ort-default.onnx"), Reader())  # everything as ORT ships it
    root_logger.setLevel(level)
    seconds["ort-default"] = time.time() - t0
    models["ort-default"] = work / "ort-default.onnx"
    log(f"ORT quantize_static defaults: {seconds['ort-default']:.0f}s")

    held = load_set(work / "heldout", spec, None, 0, True, "evaluation", progress=False)
    hb, labels = list(held.batches(BATCH)), held.labels
    logits = {k: logits_of(p, hb, manifest.output) for k, p in models.items()}
    exact = {k: logits_of(p, hb, manifest.output, exact=True) for k, p in models.items() if k != "fp32"}
    graphs = {k: executed_graph(p, work) for k, p in models.items()}
    load_before = os.getloadavg()
    tput = throughput(models, np.stack(held.tensors[:BATCH]), args.repeats, args.iters)
    load_after = os.getloadavg()

    thr = manifest.threshold.value
    p32 = sigmoid(logits["fp32"])
    auc32 = roc_auc(labels, p32)
    rows = []
    for k in models:
        p = sigmoid(logits[k])
        auc = roc_auc(labels, p)
        shift = score_shift(logits["fp32"], logits[k], thr)
        g = graphs[k]
        int8_ops = sum(v for op, v in g.items() if op.startswith("QLinear") or op in ("QGemm", "MatMulInteger"))
        rows.append({
            "model": k,
            "img_per_s": tput[k]["median"],
            "img_per_s_min_max": [tput[k]["min"], tput[k]["max"]],
            "ms_per_img": 1000 / tput[k]["median"],
            "speedup_vs_fp32": tput[k]["median"] / tput["fp32"]["median"],
            "auc": auc,
            "ap": average_precision(labels, p),
            "auc_drop_points": 100 * (auc32 - auc),
            "decision_agreement": shift["decision_agreement"],
            "mean_abs_dp_vs_fp32": shift["mean_abs_dp"],
            "logit_spread_ratio": shift["logit_spread_ratio"],
            "executed_int8_ops": int8_ops,
            "max_abs_dlogit_kernels_vs_exact": float(np.abs(logits[k] - exact[k]).max()) if k in exact else 0.0,
            "max_abs_dlogit_exact_vs_fp32": float(np.abs(exact[k] - logits["fp32"]).max()) if k in exact else 0.0,
            "executed_float_conv": g.get("Conv", 0) + g.get("FusedConv", 0),
            "executed_graph": g,
            "quantize_seconds": seconds.get(k),
            "kept_float": reports[k]["kept_float"] if k in reports else None,
            "size_mb": os.path.getsize(models[k]) / 1e6,
        })  # fmt: skip
    others = [r for r in rows if r["model"].startswith("fakedet-") and "-cpu" not in r["model"]
              and r["model"] != f"fakedet-{methods[0]}"]  # fmt: skip
    best_other = min(others, key=lambda r: (r["auc_drop_points"], r["mean_abs_dp_vs_fp32"]))["model"] if others else None
    ours = next(r for r in rows if r["model"] == f"fakedet-{methods[0]}-cpu")  # what ort-cpu runs
    ortd = next(r for r in rows if r["model"] == "ort-default")
    targets = {
        "int8_ge_3x_fp32": ours["speedup_vs_fp32"] >= 3.0,
        "auc_drop_le_0.5_points": ours["auc_drop_points"] <= 0.5,
        "as_accurate_as_ort_default": ours["auc_drop_points"] <= ortd["auc_drop_points"] + 1e-9,
        "as_fast_as_ort_default": ours["img_per_s"] >= ortd["img_per_s"],
    }
    result = {
        "machine": machine, "cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "onnxruntime": ort_version,
        "intra_op_threads": os.cpu_count(), "batch": BATCH, "repeats": args.repeats, "iters_per_repeat": args.iters,
        "load_average_1_5_15": {"start": load_start, "before_timing": load_before, "after_timing": load_after},
        "detector": {**detector, "heldout_fp32_auc": auc32, "calibration_images": len(calib), "heldout_images": len(held)},
        "default_method": methods[0], "best_other_method": best_other, "targets_default_method": targets,
        "rows": rows, "total_seconds": time.time() - t_start,
        "guard": {k: {"passed": r["guard"].get("passed"), "shift_passed": r["guard"].get("shift_passed"),
                      "initial_auc_drop": r["guard"].get("initial", {}).get("auc_drop")}
                  for k, r in reports.items()},
        "calibrate_cpu_speed": {k: r.get("cpu_speed") for k, r in reports.items() if not k.endswith("-cpu")},
    }  # fmt: skip
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    base = out / f"calibration_{machine}"
    base.with_suffix(".json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    figure(base.with_suffix(".png"), rows, labels, {k: sigmoid(v) for k, v in logits.items()}, methods[0])
    md = markdown(result, args, methods, base.name)
    base.with_suffix(".md").write_text(md)
    print(md)


def figure(path: Path, rows: list[dict], labels: np.ndarray, probs: dict, default: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r["model"] for r in rows]
    a.barh(names, [r["img_per_s"] for r in rows], color=["grey" if n == "fp32" else "tab:blue" if n.startswith("fakedet") else "tab:orange" for n in names])
    for i, r in enumerate(rows):
        a.text(r["img_per_s"], i, f" {r['speedup_vs_fp32']:.2f}x", va="center")
    a.set_xlabel("images/s (ONNX Runtime CPU, batch 8, median)")
    a.invert_yaxis()
    for name, color in ((f"fakedet-{default}", "tab:blue"), ("ort-default", "tab:orange")):
        b.scatter(probs["fp32"], probs[name], s=10, alpha=0.6, color=color, label=name)
    b.plot([0, 1], [0, 1], "k--", lw=0.8)
    b.set_xlabel("P(fake), FP32")
    b.set_ylabel("P(fake), INT8")
    b.set_title("score shift on held-out images")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(res: dict, args, methods: list[str], name: str) -> str:
    from fakedet.calibration.files import CPU_WEIGHTS

    d = res["detector"]
    la = res["load_average_1_5_15"]
    lines = [
        f"# INT8 calibration benchmark ({res['machine']})",
        "",
        f"- CPU: {res['cpu']}, {res['cores']} cores, flags {', '.join(res['cpu_flags'])}; onnxruntime {res['onnxruntime']} "
        f"CPUExecutionProvider, intra-op threads {res['intra_op_threads']}",
        f"- detector: torchvision ResNet-50, random init, BatchNorm running statistics re-estimated on {d['bn_images']} "
        f"synthetic images, 1-logit head fitted by logistic regression on the pooled features of {d['train_images']} "
        f"images (synthetic scenes = real; other scenes through a 2x resample, blur or JPEG = fake); exported with "
        f"torch.onnx (opset 17). Not a trained detector: it stands in for one with sane activation statistics.",
        f"- data: {d['calibration_images']} calibration images, {d['heldout_images']} held-out images (disjoint seeds; "
        f"FP32 held-out AUC {d['heldout_fp32_auc']:.4f}), 224x224",
        f"- timing: batch {res['batch']}, {res['repeats']} repeats x {res['iters_per_repeat']} batches, models interleaved "
        f"within each repeat, median (min-max in the JSON); 1-min load average {la['before_timing'][0]:.2f} before "
        f"and {la['after_timing'][0]:.2f} after timing (2 shared cores)",
        f"- fakedet: `fakedet calibrate` pipeline, default method **{methods[0]}**; best other method: "
        f"**{(res['best_other_method'] or '-').replace('fakedet-', '')}**; ort-default: `quantize_static(fp32, out, reader)` "
        f"with ORT's defaults (QDQ, uint8 activations, int8 per-tensor weights, MinMax) on the same calibration images",
        "",
        "| model | img/s | ms/img | x FP32 | AUC | AP | AUC drop (points) | agreement | mean abs dP | max abs dlogit kernels vs exact | max abs dlogit exact vs FP32 | INT8 ops / float Conv run by ORT | kept float |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]  # fmt: skip
    for r in res["rows"]:
        kept = ", ".join(r["kept_float"]) if r["kept_float"] else ("none" if r["kept_float"] is not None else "")
        lines.append(
            f"| {r['model']} | {r['img_per_s']:.1f} | {r['ms_per_img']:.1f} | {r['speedup_vs_fp32']:.2f} | {r['auc']:.4f} | "
            f"{r['ap']:.4f} | {r['auc_drop_points']:+.2f} | {r['decision_agreement']:.3f} | "
            f"{r['mean_abs_dp_vs_fp32']:.4f} | {r['max_abs_dlogit_kernels_vs_exact']:.4f} | "
            f"{r['max_abs_dlogit_exact_vs_fp32']:.4f} | {r['executed_int8_ops']} / {r['executed_float_conv']} | {kept} |"
        )
    t = res["targets_default_method"]
    lines += [
        "",
        "Rows: `fakedet-<method>` = model.int8.onnx (TensorRT flavour: symmetric int8, zero-point 0); "
        "`fakedet-<method>-cpu` = model.int8-cpu.onnx (ONNX Runtime CPU flavour: uint8 activations, same ranges, "
        f"{CPU_WEIGHTS} weights), the artifact `fakedet` runs on ort-cpu; `-cpu-u8s8` / `-cpu-u8u8`: the same with "
        "8-bit int8 / uint8 weights (candidate forms, no fallback). In-calibration CPU check (cpu_speedup attr): "
        + "; ".join(f"{k}: {v['speedup']:.2f}x ({v['repeats']} repeats)" for k, v in res["calibrate_cpu_speed"].items() if v)
        + ".",
        "",
        f"Targets (fakedet-{methods[0]}-cpu, what ort-cpu runs): INT8 >= 3x FP32: {'met' if t['int8_ge_3x_fp32'] else 'NOT met'}; "
        f"AUC drop <= 0.5 points: {'met' if t['auc_drop_le_0.5_points'] else 'NOT met'}; "
        f"at least as accurate as ort-default: {'yes' if t['as_accurate_as_ort_default'] else 'no'}; "
        f"at least as fast as ort-default: {'yes' if t['as_fast_as_ort_default'] else 'no'}.",
        "",
        f"Whole run {res['total_seconds'] / 60:.1f} min. Command: `.venv/bin/python benchmarks/calibration_int8.py "
        f"--methods {','.join(methods)} --bn {args.bn} --train {args.train} --calib {args.calib} "
        f"--heldout {args.heldout} --repeats {args.repeats} --iters {args.iters} --max-score-shift {args.max_score_shift} --cpu-forms {args.cpu_forms or chr(39) * 2}`",
        f"Files: `{name}.json` (all rows, executed graphs, load averages), `{name}.png` (throughput, score shift).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
