"""What does an evidence map cost? Throughput of Detector scoring with explain vs without,
in the same run, interleaved (none, exported, none, exported, ...), batch 8, ONNX Runtime CPU, FP32.

Models: the `fakedet demo` detector (resnet-tiny-nodown on its 96 px crops; --demo DIR)
and resnet50-nodown (random weights, exported here; --r50-side px images, default 128:
a full-resolution ResNet-50 without early downsampling is slow on two cores). For the
demo detector the tile map (what a model without the exported output gets: CLIP heads,
foreign ONNX) is measured too, and the tile count of a CLIP-style 224 px model on common
image sizes is stated (its cost is one forward per tile).

    python benchmarks/evidence_cost.py --demo demo-out --tag amd-epyc-2core

Writes benchmarks/results/evidence_cost[-TAG].json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH = 8


def _throughput(det, tensors, mode: str, seconds: float) -> float:
    if mode == "tiles":
        det.explainer().exported = False
    t0, n = time.perf_counter(), 0
    try:
        while time.perf_counter() - t0 < seconds:
            if mode == "tiles":
                det.predict(tensors["images"], explain=True)
            else:
                det.predict_prepared(tensors["tensors"], explain=mode == "exported")
            n += BATCH
    finally:
        det.explainer().exported = det.manifest.evidence is not None
    return n / (time.perf_counter() - t0)


def measure(pkg: Path, images: list, modes: list[str], repeats: int, seconds: float, threads: int) -> dict:
    from fakedet.runtime.detector import Detector
    from fakedet.runtime.evidence import tile_layout

    with Detector.open(pkg, backend="ort-cpu", precision="fp32", threads=threads, batch_size=BATCH) as det:
        tensors = {"images": images, "tensors": [det.prepare(im) for im in images]}
        for m in modes:  # warm-up
            _throughput(det, tensors, m, 0.2)
        runs = {m: [] for m in modes}
        for _ in range(repeats):
            for m in modes:
                runs[m].append(_throughput(det, tensors, m, seconds))
        med = {m: statistics.median(v) for m, v in runs.items()}
        out = {"images_per_s": med, "runs": runs, "input": list(tensors["tensors"][0].shape)}
        if "exported" in med:
            out["exported_over_none"] = med["exported"] / med["none"]
        if "tiles" in med:
            out["tiles_over_none"] = med["tiles"] / med["none"]
            out["tiles_per_image"] = len(tile_layout(det.manifest.input, images[0].width, images[0].height)[2])
        return out


def _r50_package(work: Path, side: int) -> Path:
    import torch

    from fakedet.train.checkpoint import save_checkpoint
    from fakedet.train.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet50-nodown", pretrained="none").eval()
    ck = save_checkpoint(work / "r50", model, {"arch": "resnet50-nodown", "model_kwargs": {}, "threshold": 0.5,
                                               "metrics": {}, "data_digest": "0" * 16})
    pkg = work / "r50.fdet"
    subprocess.run([sys.executable, "-m", "fakedet", "export", str(ck), "-o", str(pkg), "--precision", "fp32",
                    "--sample-size", str(side)], check=True, capture_output=True)
    return pkg


def clip_tiles() -> dict:
    from fakedet.manifest import InputSpec, Preprocess
    from fakedet.runtime.evidence import tile_layout

    spec = InputSpec(preprocess=Preprocess(policy="center-crop", size=(224, 224))).validate()
    return {f"{w}x{h}": len(tile_layout(spec, w, h)[2]) for w, h in ((224, 224), (512, 512), (1024, 768), (1920, 1080))}


def main() -> int:
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, default=None, help="a `fakedet demo` output folder (left out: ResNet-50 only)")
    ap.add_argument("--r50-side", type=int, default=128)
    ap.add_argument("--no-r50", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()

    report = {"batch": BATCH, "backend": "ort-cpu", "threads": a.threads, "repeats": a.repeats, "seconds": a.seconds,
              "cpu": platform.processor() or platform.machine(), "load_before": os.getloadavg(),
              "models": {}, "clip_224_tiles_per_image": clip_tiles()}
    try:
        report["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if a.demo is not None:
        crops = sorted((a.demo / "heldout" / "0_real").glob("*.png"))[:BATCH]
        images = [Image.open(p).convert("RGB") for p in crops]
        report["models"]["demo resnet-tiny-nodown"] = measure(a.demo / "detector.fdet", images,
                                                              ["none", "exported", "tiles"], a.repeats, a.seconds, a.threads)
    if not a.no_r50:
        rng = np.random.default_rng(0)
        big = [Image.fromarray(rng.integers(0, 256, (a.r50_side, a.r50_side, 3), dtype=np.uint8)) for _ in range(BATCH)]
        with tempfile.TemporaryDirectory() as tmp:
            pkg = _r50_package(Path(tmp), a.r50_side)
            report["models"][f"resnet50-nodown {a.r50_side}px"] = measure(pkg, big, ["none", "exported"], a.repeats,
                                                                          a.seconds, a.threads)
    report["load_after"] = os.getloadavg()
    out = ROOT / "benchmarks" / "results" / f"evidence_cost{'-' + a.tag if a.tag else ''}"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Evidence map cost (batch {BATCH}, ONNX Runtime CPU, {a.threads} threads)", "",
             f"CPU: {report['cpu']}; load average before {report['load_before'][0]:.1f}, after "
             f"{report['load_after'][0]:.1f}; medians of {a.repeats} interleaved runs of {a.seconds:g} s.", "",
             "| model | input | no map img/s | exported map img/s | ratio | tile map img/s | ratio |", "|---|---|---|---|---|---|---|"]
    for name, r in report["models"].items():
        m = r["images_per_s"]
        tiles = f"{m['tiles']:.1f} | {r['tiles_over_none']:.3f} ({r['tiles_per_image']} tiles)" if "tiles" in m else "- | -"
        lines.append(f"| {name} | {'x'.join(map(str, r['input']))} | {m['none']:.1f} | {m['exported']:.1f} | "
                     f"{r['exported_over_none']:.3f} | {tiles} |")
    lines += ["", "CLIP-style 224 px model (center-crop), tiles per image = forwards per image: " +
              ", ".join(f"{k} {v}" for k, v in report["clip_224_tiles_per_image"].items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
