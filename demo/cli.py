"""`fakedet demo`: every stage on real photographs, offline, in minutes."""

from __future__ import annotations

from pathlib import Path

import click

# The one statement of how long --quick takes (README, docs and --help repeat it as it is).
QUICK_TIME = "1-2 minutes on 2 idle cores, several times that under load"


@click.command(
    "demo",
    epilog=f"""\b
Examples:
  fakedet demo                       # about 4-5 minutes on 2 CPU cores
  fakedet demo --quick --out /tmp/d  # fewer crops, 6 epochs, weak AUC: {QUICK_TIME}
  fakedet demo --arch clip-mlp       # the robust-CLIP head (random ViT-S-32 backbone: slow, weak)
  fakedet demo --seed 1 --out demo-seed1   # another training seed (a new --out: runs resume)
  fakedet demo --no-robust --out demo-plain  # without the resize/JPEG/WebP/blur augmentation, 15 epochs

\b
Photographs: files inside the scikit-image, scikit-learn and matplotlib wheels (15 train,
4 held out: chelsea, flower, grace_hopper, rocket), cut into crops. Fakes: their
reconstructions through a small KL autoencoder trained on the training photos (weights in
the fakedet wheel, scripts/train_demo_autoencoder.py rebuilds them), and images the decoder
makes from latents no photo encodes to (two held-out latents mixed, latents plus noise).
Stages: align -> train -> eval (ROC PNG) -> export -> calibrate -> FP32 vs INT8 -> bench ->
predict; one line per stage, each stage's output in OUT/logs/, figures in OUT/summary.json
(with everything they depend on: package versions, seeds, threads, CPU and INT8 tier,
the photographs' digests). Torch runs two threads on every machine, so a given set of
package versions prints the same figures everywhere (docs/demo-robustness.md).
Re-running reuses the crops and reconstructions already made and resumes training.""",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"), show_default=True,
              help="Folder for every artifact.")
@click.option("--quick", is_flag=True, help=f"Fewer crops, generated images and benchmark seconds: a smoke run ({QUICK_TIME}).")
@click.option("--arch", default="resnet-tiny-nodown", show_default=True,
              help="Detector: resnet-tiny-nodown, or clip-mlp / clip-linear (random ViT-S-32), resnet50-nodown (slow).")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Training epochs [20, --no-robust 15; --quick 6; clip heads 12].")
@click.option("--vae", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Another autoencoder folder (diffusers layout) instead of the bundled one.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Training seed (sample order, augmentation draws, initial weights); crops stay the same.")
@click.option("--robust/--no-robust", default=True, show_default=True,
              help="Train with the robustness augmentation (resize x0.5-1, JPEG, WebP, blur; 20 epochs) or "
                   "without (15 epochs); docs/demo-robustness.md has what each measured.")
def demo(out, quick, arch, epochs, vae, seed, robust):
    """Run the main job end to end on photographs bundled in installed wheels: align, train, evaluate,
    export, calibrate INT8, compare FP32 and INT8, benchmark and predict."""
    from fakedet.extras import require

    require("demo", ("torch", "diffusers", "onnx", "skimage", "sklearn", "matplotlib"))
    from .main import run_demo
    from .stages import StageFailed

    try:
        run_demo(out, quick=quick, arch=arch, vae=vae, epochs=epochs, seed=seed, robust=robust)
    except StageFailed as e:
        click.echo(f"fakedet: error: {e}", err=True)
        return 1
    return 0
