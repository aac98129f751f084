"""`fakedet calibrate --text-tower fp32|int8` on a caption-aware CLIP detector, CPU, batch 8.

One run: a clip-mlp with use_text (random weights, an open_clip architecture, default
ViT-B-32) exported to a package, calibrated twice on the same synthetic captioned images
(`--text-tower fp32`, then `int8`; the ranges are shared), then measured against FP32:
  throughput   FP32 ONNX, INT8 CPU artifact with the text tower in float, INT8 CPU artifact
               with it quantized; one ONNX Runtime session each (intra-op threads = CPU
               cores), images with their captions, interleaved repeat by repeat, median
  fidelity     max |logit| and mean |dP| against FP32 on the held-out images, and the
               relative error of the text features the head reads (0 for a float tower)
  cost         the share of the model's multiply-adds in the text tower (from the config),
               the calibration's wall time per choice
The weights are random: the figures are about speed and how far INT8 moves the numbers,
not accuracy. Writes results/calibration_text_tower-<tag>.{json,md,png}.

    .venv/bin/python benchmarks/calibration_text_tower.py [--clip ViT-B-32] [--images 32] [--tag amd-epyc-2core]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OTHER_CLIPS = ("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336")  # their text tower's share, for the record
CAPTIONS = ("a photo of a dog on the beach", "café sign at night ☕", "two people &amp; a bicycle in the rain",
            "digital art of a castle, trending on artstation", "portrait, 8k, highly detailed, octane render",
            "a bowl of fruit on a wooden table")  # fmt: skip


def log(msg: str) -> None:
    print(f"[text-tower-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_set(root: Path, n: int, seed: int) -> Path:
    """n captioned 256 px images (half per class) and their CSV."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, level in ((0, 0.35), (1, 0.6)):
        for i in range(n // 2):
            arr = np.clip(rng.normal(level, 0.15, (256, 256, 3)), 0, 1)
            Image.fromarray((arr * 255).astype(np.uint8)).save(root / f"{label}_{i}.png")
            rows.append({"path": f"{label}_{i}.png", "label": label, "caption": f"{CAPTIONS[(i + 3 * label) % 6]} #{i}"})
    with open(root / "set.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["path", "label", "caption"])
        w.writeheader()
        w.writerows(rows)
    return root / "set.csv"


def text_share(clip_name: str) -> float:
    """Share of the multiply-adds in the text tower (transformer blocks; 12 w^2 per token and
    layer plus attention's 2 t^2 w per layer)."""
    import open_clip

    cfg = open_clip.get_model_config(clip_name)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    patches = (v["image_size"] // v["patch_size"]) ** 2

    def macs(tokens, width, layers):
        return layers * (12 * tokens * width**2 + 2 * tokens**2 * width)

    img = macs(patches + 1, v["width"], v["layers"]) + patches * 3 * v["patch_size"] ** 2 * v["width"]
    txt = macs(t.get("context_length", 77), t["width"], t["layers"])
    return txt / (img + txt)


def text_features(model, feeds) -> np.ndarray:
    """The text features the head's concat reads (its input not on the image's path)."""
    import onnx
    import onnxruntime as ort

    from fakedet.calibration.text_tower import text_tower_nodes
    from fakedet.onnx_graph import name_nodes, producers

    m = onnx.ModelProto.FromString(model.SerializeToString())
    name_nodes(m)
    tower = set(text_tower_nodes(m, "text"))
    prod = producers(m.graph)

    def source(t):
        while prod[t].op_type in ("QuantizeLinear", "DequantizeLinear"):
            t = prod[t].input[0]
        return t

    t = next(source(i) for n in m.graph.node if n.op_type == "Concat" and n.name not in tower
             for i in n.input if i in prod and prod[source(i)].name in tower)  # fmt: skip
    m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run([t], feeds)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="ViT-B-32", help="open_clip architecture (random weights)")
    ap.add_argument("--images", type=int, default=32, help="calibration and held-out images, each")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--work", type=Path, default=Path("/tmp/fakedet-text-tower-bench"))
    ap.add_argument("--tag", default="amd-epyc-2core")
    a = ap.parse_args()

    import onnx
    import onnxruntime as ort
    import torch

    sys.path.insert(0, str(HERE.parent / "tests"))
    from caption_helpers import export_caption_package

    from fakedet.calibration.pipeline import Options, calibrate
    from fakedet.calibration.cpu_speed import cpu_model
    from fakedet.calibration.dataset import load_set
    from fakedet.package import ModelPackage
    from fakedet.runtime.captions import CaptionInput
    from fakedet.runtime.cpu_tier import cpu_record, describe
    from fakedet.runtime.scoring import sigmoid
    from fakedet.train.checkpoint import save_checkpoint
    from fakedet.train.models import create_model

    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    base = work / "det.fdet"
    if not base.is_dir():
        log(f"exporting a random-weight {a.clip} clip-mlp with captions")
        torch.manual_seed(0)
        kw = {"clip_model": a.clip, "use_text": True}
        ckpt = save_checkpoint(work / "ckpt", create_model("clip-mlp", pretrained="none", **kw).eval(),
                               {"arch": "clip-mlp", "model_kwargs": kw})  # fmt: skip
        export_caption_package(ckpt, base)
    calib, held = write_set(work / "calib", a.images, 1), write_set(work / "heldout", a.images, 2)
    pkgs, cal_s = {}, {}
    for tower in ("fp32", "int8"):
        out = work / f"cal-{tower}.fdet"
        log(f"calibrating, --text-tower {tower}")
        t0 = time.perf_counter()
        calibrate(base, Options(data=calib, eval_data=held, samples=a.images, text_tower=tower, max_auc_drop=1.0,
                                max_score_shift=1.0, progress=False), out=out)  # fmt: skip
        cal_s[tower] = time.perf_counter() - t0
        pkgs[tower] = out
    pkg = ModelPackage.open(pkgs["fp32"])
    held_set = load_set(held, pkg.manifest.input, None, 0, True, progress=False, captions=CaptionInput.of(pkg))
    batches = list(held_set.batches(8))
    models = {"fp32": onnx.load(str(pkgs["fp32"] / "model.onnx")),
              "int8, text tower fp32": onnx.load(str(pkgs["fp32"] / "model.int8-cpu.onnx")),
              "int8, text tower int8": onnx.load(str(pkgs["int8"] / "model.int8-cpu.onnx"))}  # fmt: skip
    threads = os.cpu_count() or 1
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sessions = {k: ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
                for k, m in models.items()}  # fmt: skip
    logits = {k: np.concatenate([s.run(None, b)[0].reshape(-1) for b in batches]) for k, s in sessions.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    log(f"timing, {a.repeats} interleaved repeats")
    for _ in range(a.repeats):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, batches[0])
            times[k].append(time.perf_counter() - t0)
    f32 = text_features(models["fp32"], batches[0])
    rows = {}
    for k in sessions:
        ips = [8 / t for t in times[k]]
        feats = text_features(models[k], batches[0])
        rows[k] = {
            "img_s_median": float(np.median(ips)), "img_s_repeats": ips,
            "speedup_vs_fp32": float(np.median(ips) / np.median([8 / t for t in times["fp32"]])),
            "max_abs_dlogit": float(np.abs(logits[k] - logits["fp32"]).max()),
            "mean_abs_dp": float(np.abs(sigmoid(logits[k]) - sigmoid(logits["fp32"])).mean()),
            "text_features_rel_error": float(np.linalg.norm(feats - f32) / np.linalg.norm(f32)),
        }  # fmt: skip
    reports = {t: json.loads((p / "calibration.json").read_text()) for t, p in pkgs.items()}
    result = {
        "clip": a.clip, "weights": "random", "batch": 8, "held_out_images": int(len(held_set)),
        "cpu": f"{cpu_model()}, {threads} threads, onnxruntime {ort.__version__} CPU",
        "cpu_tier": describe(cpu_record()),
        "text_tower_share_of_macs": round(text_share(a.clip), 3),
        "text_tower_share_of_macs_by_clip": {c: round(text_share(c), 3) for c in OTHER_CLIPS},
        "calibrate_seconds": {t: round(s, 1) for t, s in cal_s.items()},
        "text_tower": {t: r["text_tower"] for t, r in reports.items()},
        "results": rows,
    }  # fmt: skip
    out = HERE / "results" / f"calibration_text_tower-{a.tag}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# `calibrate --text-tower` on a caption-aware {a.clip} (random weights), batch 8", "",
             f"CPU: {result['cpu']} ({result['cpu_tier']}). Text tower: {result['text_tower_share_of_macs']:.0%} of the multiply-adds. "
             f"Calibration ({a.images} + {a.images} images): fp32 tower {cal_s['fp32']:.0f} s, int8 tower "
             f"{cal_s['int8']:.0f} s.", "",
             "Text tower's share of the multiply-adds by architecture: " + ", ".join(
                 f"{c} {v:.0%}" for c, v in result["text_tower_share_of_macs_by_clip"].items()) + ".", "",
             "| model | img/s (median) | vs FP32 | max \\|dlogit\\| | mean \\|dP\\| | text features rel. error |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {k} | {r['img_s_median']:.2f} | {r['speedup_vs_fp32']:.2f}x | {r['max_abs_dlogit']:.3g} | "
              f"{r['mean_abs_dp']:.3g} | {r['text_features_rel_error']:.3g} |" for k, r in rows.items()]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].bar(list(rows), [r["img_s_median"] for r in rows.values()], color=["grey", "tab:blue", "tab:orange"])
    ax[0].set(ylabel="img/s (batch 8, image + caption)", title="CPU throughput")
    ax[1].bar(list(rows)[1:], [r["mean_abs_dp"] for r in list(rows.values())[1:]], color=["tab:blue", "tab:orange"])
    ax[1].set(ylabel="mean |P_int8 - P_fp32|", title="score shift on held-out images")
    for x in ax:
        x.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"{a.clip} caption-aware, {result['cpu']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
