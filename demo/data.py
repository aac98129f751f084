"""The demo's data: crops of the bundled photographs, and a *generated* set made by the
autoencoder's decoder from latents that no real image encodes to.

Crops are named `PHOTO__NNN.png` (lossless), so every score can be traced back to its
source photo. The evaluation tree the demo builds is

    heldout/0_real/PHOTO__NNN.png                  held-out real crops
    heldout/reconstructed/1_fake/PHOTO__NNN.png    their reconstructions (fakedet align)
    heldout/generated/1_fake/PHOTO__mix-NNN.png    decoder(mix of two held-out latents)
    heldout/generated/1_fake/PHOTO__noise-NNN.png  decoder(held-out latent + noise)

which `fakedet eval` reads as two generators measured against the same reals.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from fakedet.atomic import atomic_write_bytes
from fakedet.train.align import png_bytes

from .photos import grid_crops, photos

SEP = "__"


def crop_name(photo: str, tag: str) -> str:
    return f"{photo}{SEP}{tag}.png"


def photo_of(path: str | os.PathLike) -> str:
    """The source photo of a crop file named by crop_name."""
    return Path(path).stem.split(SEP)[0]


def write_crops(dest: Path, role: str, size: int, per_photo: int, seed: int, defocus: float = 0.0) -> list[Path]:
    """`per_photo` random size x size crops of each photo of `role`, as PNG (kept when present).

    A `defocus` share of them is blurred first (Gaussian, sigma 0.5-3 px) and named
    PHOTO__NNN-defocus: real photographs out of focus, whose reconstructions still carry the
    decoder's traces. Without them a detector learns "little fine detail = fake" and calls a
    flat, out-of-focus real crop fake."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for k, photo in enumerate(photos(role)):
        rng = np.random.default_rng([seed, k])
        blur_rng = np.random.default_rng([seed, k, 1])
        for i, crop in enumerate(grid_crops(photo.load(), size, per_photo, rng)):
            sigma = float(blur_rng.uniform(0.5, 3.0)) if blur_rng.random() < defocus else 0.0
            path = dest / crop_name(photo.name, f"{i:03d}-defocus" if sigma else f"{i:03d}")
            if not path.exists():
                if sigma:
                    crop = np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(sigma)))
                atomic_write_bytes(path, png_bytes(np.ascontiguousarray(crop), compress_level=1))
            out.append(path)
    return out


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def generate(vae_dir: Path, reals: list[Path], dest: Path, count: int, seed: int, noise: float = 0.5) -> list[Path]:
    """`count` images from latents no real image encodes to, half of each kind:

    mix:   decode(a * z1 + (1 - a) * z2), z1, z2 the posterior means of two crops of
           different photos, a in [0.5, 0.8] (named after the photo of z1, the larger share);
    noise: decode(z + noise * std(z) * eps), eps standard normal.

    The last step of latent diffusion in miniature: a decoder fed a latent that is not
    the encoding of any photo."""
    import torch
    from diffusers import AutoencoderKL

    dest.mkdir(parents=True, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(str(vae_dir), torch_dtype=torch.float32).eval()
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    names = [photo_of(p) for p in reals]
    out = []
    with torch.no_grad():
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()) for p in reals])
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
        z = torch.cat([vae.encode(c).latent_dist.mean for c in x.split(32)])
        jobs = []
        for i in range(count):
            a = int(rng.integers(len(reals)))
            if i % 2 == 0:
                others = [j for j in range(len(reals)) if names[j] != names[a]]
                b = int(rng.choice(others))
                w = float(rng.uniform(0.5, 0.8))
                jobs.append((crop_name(names[a], f"mix-{i:03d}"), w * z[a] + (1 - w) * z[b]))
            else:
                eps = torch.randn(z[a].shape, generator=g)
                jobs.append((crop_name(names[a], f"noise-{i:03d}"), z[a] + noise * z[a].std() * eps))
        for start in range(0, len(jobs), 32):
            chunk = jobs[start:start + 32]
            y = vae.decode(torch.stack([j[1] for j in chunk])).sample
            y = ((y / 2 + 0.5).clamp(0, 1) * 255 + 0.5).clamp(0, 255).to(torch.uint8)  # as align rounds
            y = y.permute(0, 2, 3, 1).numpy()
            for (name, _), arr in zip(chunk, y):
                path = dest / name
                atomic_write_bytes(path, png_bytes(np.ascontiguousarray(arr), compress_level=1))
                out.append(path)
    return out
