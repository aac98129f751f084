"""`fakedet align`: build an aligned dataset by autoencoder reconstruction."""

from __future__ import annotations

import contextlib
import json
import os
import signal

import click

from fakedet.errors import DataError

EPILOG = """\b
Layout:
  SRC/REL.jpg                 (a plain folder of real images)  ->  DST/0_real/REL.jpg + DST/1_fake/REL.png
  SRC/G/0_real/REL.jpg        (class folders, generator G)     ->  DST/G/0_real/REL.jpg + DST/G/1_fake/REL.png
  Only real images are read; fake folders in SRC are ignored. Reals are copied byte for byte (--reals).

\b
Sizes: native, never resized. A side that is not a multiple of the autoencoder's
downsampling factor (2 ** (len(block_out_channels) - 1), 8 for SD/LDM VAEs) is
reflect-padded on the bottom/right to the next multiple, reconstructed, and the
output cropped back to the source size.

\b
Resume: an existing output that decodes fully and has the source's size is kept;
a missing or corrupt one is redone. Outputs are written atomically (a killed run leaves
at most hidden .NAME.*.tmp files, which the shard's next run removes).
Seeds: image REL gets the noise seed sha256(SEED, 1_fake/REL.png), so its sample
does not depend on batch, shard or order.

\b
Shards (--shard I/N, or torchrun's ranks) split the images by a hash of the output path:
each image is written by one process, and with --batch 1 the bytes equal a single-process
run (a larger batch may move a pixel by one level where neighbours differ).

\b
Examples:
  fakedet align --vae CompVis/ldm-text2im-large-256 --src coco/ --dst aligned/
  fakedet align --vae ./sd15/vae --src data/ --dst aligned/ --mode mean --batch 8
  fakedet align --vae ./sd15 --src coco/ --dst aligned/ --shard 0/4     # one of 4 machines
  torchrun --nproc-per-node 8 -m fakedet align --vae ./sd15 --src coco/ --dst aligned/
"""


def _device(choice: str) -> str:
    import torch

    local_rank = os.environ.get("LOCAL_RANK")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise DataError("--device cuda: no CUDA device is available here")
        return f"cuda:{local_rank}" if local_rank is not None else "cuda"
    return choice


@contextlib.contextmanager
def _sigterm_exits():
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        before = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _dtype(precision: str, device: str):
    import torch

    if precision == "auto":
        precision = "fp16" if device.startswith("cuda") else "fp32"
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


@click.command("align", epilog=EPILOG, context_settings={"max_content_width": 100})
@click.option("--vae", required=True, help="diffusers model id (ORG/NAME) or local folder of an AutoencoderKL or VQModel "
              "(a pipeline folder works: its vae/ or vqvae/ is used).")
@click.option("--subfolder", default=None, help="Subfolder of --vae holding the autoencoder (e.g. vae).")
@click.option("--src", "src", required=True, type=click.Path(file_okay=False, exists=True), help="Folder of real images.")
@click.option("--dst", "dst", required=True, type=click.Path(file_okay=False), help="Output dataset folder.")
@click.option("--mode", type=click.Choice(["sample", "mean"]), default="sample", show_default=True,
              help="Posterior sample (seeded per image, as the paper) or its mean. VQ models ignore it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Base seed for posterior sampling.")
@click.option("--shard", default=None, metavar="I/N",
              help="Process shard I of N (hash of the output path). Default: RANK/WORLD_SIZE under torchrun, else 0/1.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="cuda uses LOCAL_RANK's GPU under torchrun.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
              help="auto: fp16 on GPU, fp32 on CPU.")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True,
              help="Images per step (same-size images share a forward pass).")
@click.option("--reals", type=click.Choice(["copy", "link", "none"]), default="copy", show_default=True,
              help="Put the real images into DST/…/0_real too (copy, hard link) or not.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Reconstruct at most this many images, then stop.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def align(vae, subfolder, src, dst, mode, seed, shard, device, precision, batch, reals, limit, quiet):
    """Reconstruct real images through a latent-diffusion autoencoder (AutoencoderKL or VQModel):

    x*2-1 -> encode -> posterior sample (or mean) -> decode -> (y/2+0.5).clamp(0,1), saved as
    lossless PNG at the source's native size and paired with its real image by relative path.
    Writes DST/align_summary.json (per shard: align_summary.shard-I-of-N.json) with done,
    skipped, failed (with names) and seconds. Exit code 1 if some images failed.
    """
    from pathlib import Path

    from .align import check_dst, parse_shard, plan_jobs, run_align, summary_name
    from .autoencoder import load_autoencoder

    shard_t = parse_shard(shard)
    check_dst(Path(src), Path(dst))
    jobs = plan_jobs(src)  # bad --src stops here, before the model loads
    dev = _device(device)
    ae = load_autoencoder(vae, subfolder, dev, _dtype(precision, dev))
    with _sigterm_exits():  # torchrun and schedulers stop with SIGTERM: in-flight writes finish or vanish
        summary = run_align(ae, src, dst, mode=mode, seed=seed, shard=shard_t, batch=batch, reals=reals,
                            limit=limit, progress=not quiet, planned=jobs)
    d = summary.to_dict()
    click.echo(json.dumps({k: d[k] for k in ("done", "skipped", "failed_count", "seconds", "images_per_second")})
               + f"  -> {os.path.join(dst, summary_name(shard_t))}", err=True)
    return 1 if summary.failed else 0
