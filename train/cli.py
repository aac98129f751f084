"""`fakedet train`: every flag overrides the same key of --config (YAML or TOML)."""

from __future__ import annotations

import json
import logging
import os

import click

from fakedet.errors import DataError


def _kv(values, what: str) -> dict:
    """KEY=VALUE pairs, values parsed as JSON where they parse (numbers, true, lists), else strings."""
    out = {}
    for item in values or ():
        if "=" not in item:
            raise DataError(f"--{what} takes KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        try:
            out[k.strip().replace("-", "_")] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip().replace("-", "_")] = v
    return out


@click.command(
    "train",
    epilog="""\b
Examples:
  fakedet train --arch resnet50-nodown --data aligned/ --out runs/r50 --pretrained r50_imagenet.safetensors
  fakedet train --arch clip-mlp --data d3.csv --out runs/clip --model-opt clip_model=ViT-L-14 \\
      --pretrained openai --loss cvar-auc --sam-rho 0.05 --optimizer adamw --lr 1e-3 --batch 2048
  fakedet train --config train.yaml --epochs 5          # flags override the file
  torchrun --nproc-per-node 4 -m fakedet train --config train.yaml
  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST0:29500 \\
      --rdzv-id run1 -m fakedet train --config train.yaml   # same command on both nodes

\b
Under torchrun --batch is the global batch (split over the processes) and a step
sees the same images as in one process; only rank 0 validates, writes <out> and
prints. --data and --out must be the same shared folder on every node.

\b
Defaults follow each architecture's published recipe (clip-mlp: SAM around AdamW,
CVaR + AUC loss, cosine schedule; resnet50-nodown: Adam, BCE, paired batches, early
stopping then lr/10); the file and the flags override them.
Config file keys are the flag names (with _ for -), plus `model_kwargs` and `augment`
mappings, e.g. augment: {jpeg: 0.5, webp: 0.2, crop_size: 96}. Resumes from <out>/last
when it exists; writes <out>/best, <out>/last, metrics.jsonl and summary.json.""",
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML or TOML file of settings.")
@click.option("--arch", help="Model: resnet50-nodown, resnet-tiny-nodown, resnet50, clip-mlp, clip-linear.")
@click.option("--data", help="Training data: folder with 0_real/ and 1_fake/ (nested generators ok) or a CSV.")
@click.option("--val-data", help="Validation data (default: hold out --val-fraction of --data).")
@click.option("--val-fraction", type=float, help="Fraction of --data held out for validation [0.1].")
@click.option("--out", help="Run directory for checkpoints and metrics.")
@click.option("--pretrained", help="'none', a local .safetensors file, or an open_clip tag (CLIP archs).")
@click.option("--model-opt", multiple=True, metavar="KEY=VALUE",
              help="Architecture option, repeatable (e.g. clip_model=ViT-B-32, use_text=true).")
@click.option("--epochs", type=int, help="Maximum epochs [100].")
@click.option("--batch", type=int, help="Images per step; paired batches hold reals and their fakes [32].")
@click.option("--val-batch", type=int, help="Validation batch (0: --batch).")
@click.option("--lr", type=float, help="Learning rate [1e-4].")
@click.option("--weight-decay", type=float, help="Weight decay [0].")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), help="Base optimiser [adam].")
@click.option("--sam-rho", type=float, help="SAM neighbourhood radius; 0 turns SAM off [0].")
@click.option("--loss", type=click.Choice(["bce", "cvar", "auc", "cvar-auc"]), help="Training loss [bce].")
@click.option("--cvar-alpha", type=float, help="CVaR alpha [0.8].")
@click.option("--auc-eta", type=float, help="AUC loss margin eta [0.6].")
@click.option("--auc-p", type=float, help="AUC loss power p [2].")
@click.option("--gamma", type=float, help="Weight of CVaR in cvar-auc [0.5].")
@click.option("--region-loss", type=float,
              help="Weight of a per-region loss on the evidence map (each region of a real is real, of a "
                   "reconstruction generated): maps that find spliced regions. Whole-image convnets only [0].")
@click.option("--schedule", type=click.Choice(["plateau", "cosine", "none"]),
              help="plateau: early stopping on balanced accuracy, then lr/10 until --min-lr [plateau].")
@click.option("--patience", type=int, help="Epochs without improvement before lr decay [10].")
@click.option("--min-delta", type=float, help="Improvement that counts [0.001].")
@click.option("--min-lr", type=float, help="Stop when the decayed lr falls below this [1e-6].")
@click.option("--paired/--unpaired", default=None, help="Batch real images with their reconstructions [paired].")
@click.option("--augment", "augment_opts", multiple=True, metavar="KEY=VALUE",
              help="Augmentation probability or size, repeatable (jpeg=0.5, crop_size=96, off=true).")
@click.option("--no-augment", is_flag=True, default=None, help="Train without augmentation.")
@click.option("--seed", type=int, help="Random seed [0].")
@click.option("--workers", type=int, help="DataLoader worker processes [0].")
@click.option("--device", help="auto, cpu, cuda, cuda:1 [auto].")
@click.option("--amp/--no-amp", default=None, help="Mixed precision on GPU [on].")
@click.option("--sync-bn/--no-sync-bn", default=None,
              help="Under torchrun on GPUs: BatchNorm statistics of the global batch (SyncBatchNorm) [on].")
@click.option("--cache-dir", help="Feature cache for frozen backbones [<out>/feature_cache].")
@click.option("--threshold", type=float, help="Decision threshold on P(fake) [0.5].")
@click.option("--resume/--no-resume", default=None, help="Continue from <out>/last when present [resume].")
@click.option("--progress/--no-progress", default=None, help="Progress bars on stderr [on].")
def train(config_file, model_opt, augment_opts, no_augment, **flags):
    """Train a detector and write safetensors checkpoints (never pickled).

    Frozen-backbone models (clip-mlp, clip-linear) extract features once into a
    cache and train only the head. Unreadable images are skipped and counted;
    an empty class folder, one class only, or an unknown config key stops
    before any work."""
    from .config import make_config
    from .trainer import Trainer

    rank = int(os.environ.get("RANK", 0))
    logger = logging.getLogger("fakedet")
    if not logger.handlers:  # our messages on stderr; third-party INFO chatter stays quiet
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
        logger.propagate = False  # a library's logging.basicConfig on the root would print each line twice
    model_kwargs = _kv(model_opt, "model-opt")
    augment = _kv(augment_opts, "augment")
    if no_augment:
        augment["off"] = True
    cfg = make_config(config_file, **flags)
    # flags add to the file's mappings rather than replace them
    if augment:
        cfg.augment = {**cfg.augment, **augment}
    if model_kwargs:
        cfg.model_kwargs = {**cfg.model_kwargs, **model_kwargs}
    summary = Trainer(cfg).run()
    skipped = summary["skipped_images"]["skipped"]
    if rank == 0:
        click.echo(json.dumps({k: summary[k] for k in ("epochs_done", "best_balanced_accuracy", "best", "last",
                                                       "skipped_images")}, indent=2))
    return 1 if skipped else 0
