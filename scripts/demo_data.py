"""Procedural "photographs" for the offline demo: smooth colour fields, shapes and
sensor noise, saved as JPEG at varied sizes. No downloads, deterministic per seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def natural_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    low = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    base = Image.fromarray(low, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(4, width // 2 + 5), y0 + rng.integers(4, height // 2 + 5)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=color)
    base = base.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    arr = np.asarray(base).astype(np.float32) + rng.normal(0, rng.uniform(2, 8), (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def write_reals(dest: Path, count: int, seed: int = 0, sizes=(48, 96)) -> list[Path]:
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        w, h = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
        p = dest / f"img_{i:04d}.jpg"
        if not p.exists():
            natural_image(rng, w, h).save(p, quality=int(rng.integers(85, 98)))
        else:
            natural_image(rng, w, h)  # keep the generator's sequence identical on reruns
        out.append(p)
    return out
