"""INT8 on the models people bring: five classifiers exported the ordinary way, wrapped with
`fakedet package` and calibrated with `fakedet calibrate` defaults, against ONNX Runtime.

Models: torchvision resnet50; timm efficientnet_b0, mobilenetv3_large_100, convnext_atto,
regnety_002; random init (no downloads), 1-logit head, exported with torch.onnx's TorchScript
exporter (opset 17, dynamic batch; it deduplicates equal initializers through Identity nodes).
Per model, on the same images:
  torch eager         the torch module, batch 8
  ort fp32            the ONNX file as exported, ONNX Runtime CPU
  fakedet int8        model.int8-cpu.onnx of `package` (graph normalised, the default) + `calibrate`
  fakedet int8 raw    the same with `package --normalise none` (the old behaviour)
  fakedet int8 onnxslim  with `package --normalise onnxslim` (--normalisers ort,none,onnxslim)
  ort qdq             onnxruntime.quantization.quantize_static with its defaults (QDQ, MinMax,
                      uint8 activations, per-tensor int8 weights) on the ONNX file as exported
Throughput: batch 8, one session per model with intra-op threads = cores, all variants
interleaved repeat by repeat, median of repeats (the machine is shared: load named beside).
Agreement: decision agreement with FP32 at P=0.5 and max |logit diff| on held-out images. A
random-init net detects nothing, so the held-out labels are FP32's own decision (its logit
above the median): AUC then measures how well INT8 keeps FP32's ranking, and the accuracy
guard (--max-auc-drop 0.005 default) judges that. "auto" is what `fakedet.runtime` picks on
this CPU for the calibrated package (INT8 only where the calibration's CPU check saw >= 1.0x).

    .venv/bin/python benchmarks/foreign_int8.py [--models resnet50,convnext_atto] [--calib 64] [--heldout 64]
Writes benchmarks/results/foreign_int8-<cpu>.{json,md,png}; with --models a subset, merges into
an existing JSON of the same name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from calibration_int8 import machine_id, write_set  # noqa: E402

MODELS = ("resnet50", "efficientnet_b0", "mobilenetv3_large_100", "convnext_atto", "regnety_002")
SIZE, BATCH = 224, 8
# --normalise method -> (row key, column): the default first, then the old behaviour
VARIANTS = {"ort": ("normalised", "fakedet int8"), "none": ("raw", "fakedet int8 raw"),
            "onnxslim": ("onnxslim", "fakedet int8 onnxslim")}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def log(msg: str) -> None:
    print(f"[foreign-int8 {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(name: str):
    import torch

    torch.manual_seed(0)
    if name == "resnet50":
        import torchvision

        m = torchvision.models.resnet50(weights=None)
        m.fc = torch.nn.Linear(m.fc.in_features, 1)
    else:
        import timm

        m = timm.create_model(name, pretrained=False, num_classes=1)
    return m.eval()


def export(model, path: Path) -> None:
    import torch

    torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), str(path), opset_version=17, input_names=["input"],
                      output_names=["logit"], dynamic_axes={"input": {0: "batch"}, "logit": {0: "batch"}},
                      dynamo=False)  # fmt: skip


def spec_file(path: Path) -> Path:
    path.write_text(json.dumps({"input": {"name": "input", "mean": MEAN, "std": STD,
                                          "preprocess": {"policy": "center-crop", "size": [SIZE, SIZE]}},
                                "output": {"name": "logit", "kind": "logit"}, "threshold": 0.5}))  # fmt: skip
    return path


def tensors(root: Path, spec):
    from fakedet.runtime.dataset_index import index_dataset
    from fakedet.runtime.preprocess import preprocess

    samples = index_dataset(root)
    return [s.path for s in samples], np.stack([preprocess(s.path, spec) for s in samples])


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def logits(path: Path, x: np.ndarray) -> np.ndarray:
    s = session(path)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + BATCH]})[0] for i in range(0, len(x), BATCH)]).ravel()


def relabel_by_fp32(paths: list, fp32_logits: np.ndarray, dest: Path) -> None:
    """Held-out labels = FP32's decision at its median logit (see the docstring)."""
    cut = np.median(fp32_logits)
    for p, z in zip(paths, fp32_logits):
        d = dest / ("1_fake" if z > cut else "0_real")
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, d / Path(p).name)


def ort_qdq_defaults(raw: Path, x: np.ndarray, dst: Path) -> Path | str:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": x[i:i + BATCH]} for i in range(0, len(x), BATCH)])

        def get_next(self):
            return next(self.items, None)

    try:
        quantize_static(str(raw), str(dst), Reader(), quant_format=QuantFormat.QDQ)
        return dst
    except Exception as e:  # recorded in the table, not fatal
        return f"quantize_static failed: {str(e).splitlines()[0][:200]}"


def packaged_and_calibrated(raw: Path, spec: Path, calib: Path, heldout: Path, out: Path, normalise: str, n: int) -> dict:
    """`fakedet package` + `calibrate` defaults; a package calibrated before in --work is reused."""
    from fakedet.calibration.pipeline import GuardFailed, Options, calibrate
    from fakedet.cli import main as cli

    pkg = out.with_suffix(".fdet")
    t0 = time.time()
    if not (pkg / "calibration.json").is_file():
        assert cli(["package", str(raw), "--input-spec", str(spec), "-o", str(pkg), "--normalise", normalise]) == 0
        try:
            calibrate(pkg, Options(data=calib, samples=n, eval_data=heldout, progress=False))
        except GuardFailed as e:
            return {"package": pkg, "refused": str(e), "calibrate_s": time.time() - t0, "normalisation":
                    json.loads((pkg / "manifest.json").read_text())["provenance"]["graph_normalisation"]}
    rep = json.loads((pkg / "calibration.json").read_text())
    cpu = next(f for f, a in rep["artifacts"].items() if a["target"] == "ort-cpu")
    return {"package": pkg, "int8": pkg / cpu, "calibrate_s": time.time() - t0, "cpu_check": rep["cpu_speed"],
            "guard": rep["artifacts"][cpu]["guard"]["final"], "kept_float": rep["artifacts"][cpu]["kept_float"],
            "normalisation": json.loads((pkg / "manifest.json").read_text())["provenance"]["graph_normalisation"]}


def auto_choice(pkg: Path) -> str:
    from fakedet.package import ModelPackage
    from fakedet.runtime.selection import choose
    from fakedet.runtime.tensorrt_support import TrtEnvironment

    with ModelPackage.open(pkg) as p:
        c = choose(p, "auto", providers={"CPUExecutionProvider"}, trt_env=TrtEnvironment(why_absent=["CPU benchmark"]))
        return f"{c.backend} {c.precision}"


def throughput(runners: dict, repeats: int) -> dict:
    """img/s per runner: median over `repeats`, runners interleaved within each repeat."""
    for run in runners.values():
        run()
    per = {k: [] for k in runners}
    for _ in range(repeats):
        for k, run in runners.items():
            t0 = time.perf_counter()
            run()
            per[k].append(BATCH / (time.perf_counter() - t0))
    return {k: float(np.median(v)) for k, v in per.items()}


def runners_for(model, onnx_paths: dict, batch: np.ndarray) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    tb = torch.from_numpy(batch)

    def eager():
        with torch.inference_mode():
            model(tb)

    out = {"torch eager": eager}
    for k, p in onnx_paths.items():
        s = session(p)
        feed = {s.get_inputs()[0].name: batch}
        out[k] = (lambda s=s, feed=feed: s.run(None, feed))
    return out


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC (ties counted half)."""
    pos, neg = scores[labels], scores[~labels]
    return float((np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (len(pos) * len(neg)))


def agreement(l32: np.ndarray, l8: np.ndarray) -> dict:
    """INT8 against FP32 on the held-out images: decisions at P=0.5, logit error (also relative
    to the spread of FP32's logits) and the AUC of INT8 on FP32's own median split."""
    d = np.abs(l32 - l8)
    return {"decision_agreement": float(np.mean((l32 > 0) == (l8 > 0))), "max_abs_logit_diff": float(d.max()),
            "max_dlogit_over_fp32_std": float(d.max() / (np.std(l32) + 1e-12)),
            "auc_on_fp32_ranking": rank_auc(l32 > np.median(l32), l8)}


def run_model(name: str, args, work: Path, calib: Path, pool: Path) -> dict:
    from fakedet.manifest import InputSpec

    log(f"{name}: build + export")
    d = work / name
    d.mkdir(exist_ok=True)
    model = build(name)
    raw = d / "raw.onnx"
    if not raw.is_file():
        export(model, raw)
    spec = spec_file(d / "spec.json")
    in_spec = InputSpec.from_dict(json.loads(spec.read_text())["input"])
    held_paths, xh = tensors(pool, in_spec)
    _, xc = tensors(calib, in_spec)
    l32 = logits(raw, xh)
    if not (d / "heldout").is_dir():
        relabel_by_fp32(held_paths, l32, d / "heldout")
    row = {"model": name}
    variants = {VARIANTS[m][0]: (m, VARIANTS[m][1]) for m in args.normalisers.split(",")}
    paths = {"ort fp32": raw}
    for key, (method, label) in variants.items():
        log(f"{name}: package --normalise {method} + calibrate")
        r = packaged_and_calibrated(raw, spec, calib, d / "heldout", d / key, method, args.calib)
        row[key] = {k: v for k, v in r.items() if k not in ("package", "int8")}
        row[key]["auto"] = auto_choice(r["package"]) if "int8" in r else "fp32 (no INT8: guard refused)"
        if "int8" in r:
            paths[label] = r["int8"]
            row[key]["heldout"] = agreement(l32, logits(r["int8"], xh))
    log(f"{name}: quantize_static defaults")
    q = ort_qdq_defaults(raw, xc, d / "ort-qdq.onnx")
    if isinstance(q, Path):
        paths["ort qdq"] = q
        row["ort_qdq"] = {"heldout": agreement(l32, logits(q, xh))}
    else:
        row["ort_qdq"] = {"error": q}
    log(f"{name}: throughput ({args.repeats} interleaved repeats)")
    row["img_s"] = throughput(runners_for(model, paths, xh[:BATCH]), args.repeats)
    row["load_during"] = os.getloadavg()
    return row


def _public(argv: list[str]) -> list[str]:
    """The command line without the local --work folder's path."""
    return ["WORK" if i and argv[i - 1] == "--work" else a.split("=")[0] + "=WORK" if a.startswith("--work=") else a
            for i, a in enumerate(argv)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--calib", type=int, default=64, help="calibration images")
    ap.add_argument("--heldout", type=int, default=64, help="held-out images")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--normalisers", default="ort,none",
                    help="package --normalise methods to calibrate: ort (the default), none (as exported), onnxslim")
    ap.add_argument("--work", type=Path, default=None, help="keep models and images here")
    args = ap.parse_args()
    from foreign_int8_report import figure, markdown

    slug, cpu, features = machine_id()
    out = HERE / "results" / f"foreign_int8-{slug}"
    tmp = tempfile.TemporaryDirectory(prefix="foreign-int8-")
    work = args.work or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    calib, pool = work / "calib", work / "pool"
    if not calib.exists():
        write_set(calib, args.calib // 2, seed=11)
        write_set(pool, args.heldout // 2, seed=12)
    old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    rows = {r["model"]: r for r in old.get("rows", [])}
    for name in args.models.split(","):
        rows[name] = run_model(name, args, work, calib, pool)
        res = {"cpu": cpu, "features": features, "threads": os.cpu_count(), "batch": BATCH,
               "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
               "command": "python benchmarks/foreign_int8.py " + " ".join(_public(sys.argv[1:])),
               "rows": [rows[m] for m in MODELS if m in rows]}  # fmt: skip
        out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        out.with_suffix(".md").write_text(markdown(res))
        figure(res, out.with_suffix(".png"))
        log(f"{name}: done -> {out}.md")


if __name__ == "__main__":
    main()
