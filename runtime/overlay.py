"""Evidence overlays: the pixels an evidence map covers, a translucent heat layer on top
(red, more opaque where P(fake) is higher) and the regions over the threshold outlined."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from fakedet.atomic import atomic_write_bytes

from .evidence import EvidenceMap
from .imageio import load_image
from .preprocess import geometry

HEAT = np.array([230, 30, 30], dtype=np.float32)
OUTLINE = (255, 230, 0)
MAX_ALPHA = 0.6


def base_pixels(item, ev: EvidenceMap, spec) -> np.ndarray:
    """uint8 HxWx3: what the map covers (the model's input pixels, or the decoded image)."""
    img = load_image(item, spec.preprocess.max_pixels)
    return geometry(img, spec.preprocess) if ev.covers == "input" else np.asarray(img)


def render(base: np.ndarray, ev: EvidenceMap, threshold: float | None = None) -> Image.Image:
    """The overlay as an RGB image of the base's size."""
    h, w = base.shape[:2]
    p = ev.upsampled(w, h)
    alpha = (MAX_ALPHA * p)[..., None]
    out = base.astype(np.float32) * (1 - alpha) + HEAT * alpha
    mask = p >= (ev.threshold if threshold is None else threshold)
    if mask.any():
        m = Image.fromarray(mask.astype(np.uint8) * 255)
        inner = np.asarray(m.filter(ImageFilter.MinFilter(3))) > 0
        edge = mask & ~inner
        edge = np.asarray(Image.fromarray(edge.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(3))) > 0
        out[edge] = OUTLINE
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def safe_stem(source: str, index: int) -> str:
    """A file name for an item: its stem made safe, prefixed by its position (names may repeat)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(source)).stem)[:80] or "image"
    return f"{index:05d}-{stem}"


def write_evidence(out_dir: Path, stem: str, base: np.ndarray, ev: EvidenceMap) -> tuple[Path, Path]:
    """OUT/STEM.overlay.png and OUT/STEM.evidence.npy (the raw logits), each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, npy = out_dir / f"{stem}.overlay.png", out_dir / f"{stem}.evidence.npy"
    buf = io.BytesIO()
    render(base, ev).save(buf, "PNG")
    atomic_write_bytes(png, buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, ev.logits.astype(np.float32), allow_pickle=False)
    atomic_write_bytes(npy, buf.getvalue())
    return png, npy
