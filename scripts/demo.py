"""The main job, end to end and offline, on generated data:

    procedural real photos -> fakedet align (an autoencoder built here, random weights:
    nothing can be downloaded) -> fakedet train (clip-mlp on a ViT-S-32 backbone: the
    robust-CLIP detector, CVaR + AUC loss, SAM; `--arch resnet50-nodown` for the alignment
    paper's detector, much slower on a CPU) -> fakedet eval
    -> fakedet export (fp32 + fp16 ONNX package) -> fakedet calibrate (INT8 + TRT cache)
    -> fakedet eval on the package -> fakedet bench -> fakedet predict

Every step is a real `fakedet` command; re-running reuses what is already done
(align and train resume). Run with `make demo`, or `python scripts/demo.py --out DIR`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_data import write_reals  # noqa: E402


def step(title: str, args: list, allow_fail: bool = False) -> int:
    cmd = [sys.executable, "-m", "fakedet", *map(str, args)]
    print(f"\n=== {title}\n$ fakedet {' '.join(shlex.quote(str(a)) for a in args)}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    print(f"--- {title}: exit {rc} in {time.perf_counter() - t0:.1f} s", flush=True)
    if rc != 0 and not allow_fail:
        sys.exit(f"demo: step '{title}' failed with exit code {rc}")
    return rc


def tiny_vae(dest: Path) -> Path:
    """A small AutoencoderKL (the LDM layout, narrower) saved like a hub model.
    Random weights: its reconstructions are not an SD VAE's, but every step that
    consumes them is the real one. Point --vae at a real VAE folder to do it for real."""
    if (dest / "config.json").exists():
        return dest
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    vae.save_pretrained(dest, safe_serialization=True)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("demo-out"))
    ap.add_argument("--train-images", type=int, default=48)
    ap.add_argument("--test-images", type=int, default=24)
    ap.add_argument("--arch", default="clip-mlp", help="clip-mlp (default), clip-linear, resnet50-nodown, resnet50")
    ap.add_argument("--epochs", type=int, default=None, help="default: 20 for CLIP heads, 3 for ResNets")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    print("=== generating procedural real photos (JPEG, 48-96 px)", flush=True)
    write_reals(out / "reals-train", args.train_images, seed=0)
    write_reals(out / "reals-test", args.test_images, seed=1)
    vae = tiny_vae(out / "vae")

    step("align the training set", ["align", "--vae", vae, "--src", out / "reals-train", "--dst", out / "aligned-train", "--quiet"])
    step("align the test set", ["align", "--vae", vae, "--src", out / "reals-test", "--dst", out / "aligned-test", "--quiet"])
    clip = args.arch.startswith("clip")
    arch_opts = ["--model-opt", "clip_model=ViT-S-32", "--batch", 32] if clip else ["--batch", 8, "--augment", "crop_size=48"]
    step(f"train {args.arch}", [
        "train", "--arch", args.arch, "--pretrained", "none", "--data", out / "aligned-train",
        "--out", out / "run", "--epochs", args.epochs or (20 if clip else 3), *arch_opts,
        "--val-fraction", 0.25, "--seed", 0, "--no-progress",
    ])
    step("evaluate the checkpoint (PyTorch)", ["eval", out / "run" / "best", "--data", out / "aligned-test", "--out", out / "eval-checkpoint", "--quiet"])
    step("export to a package (fp32 + fp16 ONNX, parity checked)", ["export", out / "run" / "best", "-o", out / "detector.fdet", "--precision", "both"])
    step("calibrate INT8 (QDQ ONNX + TensorRT cache, accuracy guard)", [
        "calibrate", out / "detector.fdet", "--data", out / "aligned-train", "--eval-data", out / "aligned-test",
        "--samples", 32, "--method", "percentile", "--quiet",
    ])
    step("package info", ["info", out / "detector.fdet"])
    step("evaluate the package (runtime, INT8 on CPU)", ["eval", out / "detector.fdet", "--data", out / "aligned-test", "--out", out / "eval-package", "--quiet"])
    step("benchmark torch vs ONNX Runtime fp32 / int8", [
        "bench", out / "detector.fdet", "--backend", "torch,ort-cpu", "--precision", "fp32,int8", "--batch", "1,8",
        "--warmup", 1, "--duration", 2, "--json", out / "bench.json", "--plot", out / "bench.png",
    ])
    test = out / "aligned-test"
    few = sorted((test / "1_fake").iterdir())[:3] + sorted((test / "0_real").iterdir())[:3]
    (out / "not-an-image.jpg").write_text("a text file with an image's name: reported, not fatal")
    step("predict (one bad file among them: exit 1 by design)", ["predict", out / "detector.fdet", *few, out / "not-an-image.jpg"], allow_fail=True)

    ck = json.loads((out / "eval-checkpoint" / "metrics.json").read_text())
    pk = json.loads((out / "eval-package" / "metrics.json").read_text())
    print(f"\n=== demo done in {time.perf_counter() - t0:.0f} s; outputs in {out}")
    for name, m in (("checkpoint", ck), ("package", pk)):
        o = m.get("overall", m)
        figs = "  ".join(f"{k} {o[k]:.4f}" for k in ("auc", "ap", "accuracy") if isinstance(o.get(k), (int, float)))
        print(f"  {name:<10} {figs}")
    print(f"  ROC: {out / 'eval-checkpoint' / 'roc.png'}  latency plot: {out / 'bench.png'}")


if __name__ == "__main__":
    main()
