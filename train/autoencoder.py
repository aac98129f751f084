"""The autoencoder of a latent-diffusion model, loaded with diffusers (AutoencoderKL or
VQModel, from a local folder or a Hub id), and reconstruction through it:

x in [0,1] -> x*2-1 -> encode -> posterior sample (per-image seed) or mean -> decode
-> (y/2+0.5).clamp(0,1) -> uint8, at the input's size (sides padded to the downsampling
factor by reflection, then cropped back)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakedet.errors import DataError, FakedetError, first_line

from .hub import fetching

KL_CLASSES = ("AutoencoderKL",)
VQ_CLASSES = ("VQModel",)


@dataclass
class Autoencoder:
    model: object  # a diffusers AutoencoderKL or VQModel
    kind: str  # "kl" or "vq"
    factor: int  # spatial downsampling factor
    class_name: str
    source: str


def _has_accelerate() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def _read_class(path: Path) -> str | None:
    try:
        return json.loads((path / "config.json").read_text()).get("_class_name")
    except (OSError, ValueError):
        return None


def _hub_class(vae: str, subfolder: str | None) -> tuple[str | None, str | None]:
    """Class name and subfolder of a Hub autoencoder; a pipeline repo's vae/ or vqvae/ is found."""
    import diffusers

    first_error = None
    for sub in [subfolder] if subfolder else [None, "vae", "vqvae"]:
        try:
            return diffusers.AutoencoderKL.load_config(vae, subfolder=sub).get("_class_name"), sub
        except Exception as e:
            first_error = first_error or e
    raise first_error


def load_autoencoder(vae: str, subfolder: str | None = None, device: str = "cpu", dtype=None) -> Autoencoder:
    """A diffusers AutoencoderKL (or VQModel) from a local folder or a Hub id, as one clear error if it fails.

    A pipeline folder (model_index.json) is searched for its `vae/` or `vqvae/` subfolder."""
    import diffusers

    local = Path(vae).expanduser()
    is_local = local.exists() or vae.startswith((".", "/", "~")) or vae.count("/") > 1  # hub ids are ORG/NAME
    if is_local and not local.exists():
        raise DataError(f"--vae {vae}: no such folder")
    if is_local and subfolder is None and not (local / "config.json").exists():
        for cand in ("vae", "vqvae"):
            if (local / cand / "config.json").exists():
                subfolder = cand
                break
        else:
            raise DataError(f"--vae {vae}: no config.json here nor in a vae/ or vqvae/ subfolder")
    hub = contextlib.nullcontext() if is_local else fetching(
        f"--vae {vae}", "download the autoencoder where the hub is reachable and pass its folder: --vae PATH/TO/FOLDER")
    try:
        with hub:
            if is_local:
                class_name = _read_class(local / subfolder if subfolder else local)
            else:
                class_name, subfolder = _hub_class(vae, subfolder)
            if class_name in VQ_CLASSES:
                cls, kind = diffusers.VQModel, "vq"
            elif class_name in KL_CLASSES or class_name is None:
                cls, kind = diffusers.AutoencoderKL, "kl"
            else:
                raise DataError(f"--vae {vae}: {class_name} is not supported (AutoencoderKL or VQModel)")
            kwargs = {"subfolder": subfolder} if subfolder else {}
            if not _has_accelerate():  # diffusers would fall back itself, after a six-line warning
                kwargs["low_cpu_mem_usage"] = False
            if dtype is not None:
                kwargs["torch_dtype"] = dtype
            model = cls.from_pretrained(str(local) if is_local else vae, **kwargs)
    except FakedetError:
        raise
    except Exception as e:  # missing weights, bad config: one line, not a traceback
        raise DataError(f"--vae {vae}: cannot load the autoencoder ({type(e).__name__}: {first_line(e, 300)})") from None
    model.eval().requires_grad_(False).to(device)
    blocks = model.config.get("block_out_channels") or model.config.get("down_block_out_channels")
    factor = 2 ** (len(blocks) - 1)
    return Autoencoder(model, kind, factor, cls.__name__, vae)


def pad_to_multiple(arr: np.ndarray, m: int) -> np.ndarray:
    """Reflect-pad HxWx3 on the bottom/right so both sides are multiples of m."""
    h, w = arr.shape[:2]
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return arr
    mode = "reflect" if min(h, w) > 1 else "edge"  # reflect needs 2 pixels along an axis
    return np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode=mode)


def reconstruct(ae: Autoencoder, images: list[np.ndarray], seeds: list[int], mode: str = "sample") -> list[np.ndarray]:
    """Same-size uint8 HxWx3 images -> their uint8 reconstructions (same sizes)."""
    import torch

    model = ae.model
    dev, dt = model.device, model.dtype
    h, w = images[0].shape[:2]
    x = np.stack([pad_to_multiple(a, ae.factor) for a in images])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).to(dev, torch.float32) / 255.0
    x = (x * 2.0 - 1.0).to(dt)
    with torch.inference_mode():
        if ae.kind == "vq":
            z = model.encode(x).latents
        else:
            post = model.encode(x).latent_dist
            if mode == "mean":
                z = post.mean
            else:
                # noise drawn per image on the CPU: reproducible across batch sizes and devices
                noise = torch.stack([
                    torch.randn(post.mean.shape[1:], generator=torch.Generator().manual_seed(s), dtype=torch.float32)
                    for s in seeds
                ]).to(dev, post.mean.dtype)
                z = post.mean + post.std * noise
        y = model.decode(z).sample
    y = (y.float() / 2.0 + 0.5).clamp(0, 1)[:, :, :h, :w]
    if not torch.isfinite(y).all():
        raise FloatingPointError("the autoencoder produced NaN/inf (try --precision fp32)")
    y = (y * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)  # round half up, as torchvision's save_image
    return list(y.permute(0, 2, 3, 1).cpu().numpy())
