"""Training augmentation: the alignment paper's set (arXiv 2410.11835, its training options) plus WebP, each op
with its probability from the config. Every random draw comes from one
numpy Generator, so `augment_pair` gives a real image and its reconstruction
the identical transform by drawing from two generators with the same seed
(they have the same size, so every draw matches)."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from fakedet.errors import DataError


@dataclass
class AugmentConfig:
    resized_crop: float = 0.2  # RandomResizedCrop to resized_crop_size, scale 0.08-1
    resized_crop_size: int = 256
    color_jitter: float = 0.8  # brightness/contrast/saturation 0.4, hue 0.1
    grayscale: float = 0.2
    cutout: float = 0.2
    noise: float = 0.2  # Gaussian noise, variance 10-50 (pixel units)
    blur: float = 0.5  # Gaussian blur sigma 0-3
    jpeg: float = 0.5  # JPEG quality 30-100
    webp: float = 0.2  # WebP quality 30-100 (not in the paper: the runtime meets WebP)
    downscale: float = 0.0  # whole image x downscale_min-1 (a platform's resize; the model sees the smaller image)
    downscale_min: float = 0.5
    rotate90: float = 1.0  # a random multiple of 90 degrees
    flip: float = 0.5
    crop: float = 1.0  # RandomCrop crop_size (symmetric pad when smaller): makes the batch one size
    crop_size: int = 96

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "augment") -> "AugmentConfig":
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise DataError(f"{where}: unknown key(s) {sorted(unknown)} (known: {', '.join(cls.__dataclass_fields__)})")
        cfg = cls(**d)
        for k, v in asdict(cfg).items():
            if not k.endswith("_size") and not 0.0 <= float(v) <= 1.0:
                raise DataError(f"{where}.{k}: a probability in [0, 1], got {v}")
        return cfg


def _resized_crop(img: Image.Image, size: int, rng) -> Image.Image:
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round(np.sqrt(target * ratio))), int(round(np.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            break
    else:
        cw, ch = min(w, h), min(w, h)
        left, top = (w - cw) // 2, (h - ch) // 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))


RESIZE_FILTERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def _downscale(img: Image.Image, smallest: float, rng) -> Image.Image:
    """Both sides x a factor in [smallest, 1], with a filter drawn from the ones resizers use."""
    factor = float(rng.uniform(smallest, 1.0))
    resample = RESIZE_FILTERS[int(rng.integers(0, len(RESIZE_FILTERS)))]
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return img if size == img.size else img.resize(size, resample)


def _hue_shift(img: Image.Image, shift: float) -> Image.Image:
    hsv = np.array(img.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(shift * 255))) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def _color_jitter(img: Image.Image, rng) -> Image.Image:
    factors = [rng.uniform(0.6, 1.4) for _ in range(3)]
    hue = rng.uniform(-0.1, 0.1)
    for i in rng.permutation(4):
        if i == 0:
            img = ImageEnhance.Brightness(img).enhance(factors[0])
        elif i == 1:
            img = ImageEnhance.Contrast(img).enhance(factors[1])
        elif i == 2:
            img = ImageEnhance.Color(img).enhance(factors[2])
        else:
            img = _hue_shift(img, hue)
    return img


def _cutout(img: Image.Image, rng) -> Image.Image:
    arr = np.array(img)
    h, w = arr.shape[:2]
    ch, cw = max(1, int(h * rng.uniform(0.1, 0.5))), max(1, int(w * rng.uniform(0.1, 0.5)))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    arr[top : top + ch, left : left + cw] = 0
    return Image.fromarray(arr)


def _noise(img: Image.Image, rng) -> Image.Image:
    arr = np.asarray(img).astype(np.float32)
    sigma = np.sqrt(rng.uniform(10.0, 50.0))
    arr = arr + rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(sigma)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def _encode(img: Image.Image, fmt: str, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _random_crop(img: Image.Image, size: int, rng) -> Image.Image:
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        arr = np.pad(arr, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
        h, w = arr.shape[:2]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return Image.fromarray(np.ascontiguousarray(arr[top : top + size, left : left + size]))


def augment(img: Image.Image, cfg: AugmentConfig, rng: np.random.Generator, log: list | None = None) -> Image.Image:
    """One random draw of the augmentation chain on an RGB image. Every op draws its
    coin (and its parameters) from `rng` in a fixed order; `log` receives (op, params)."""

    def coin(p: float) -> bool:
        return bool(rng.random() < p)

    def note(op, *params):
        if log is not None:
            log.append((op, *params))

    if coin(cfg.resized_crop):
        img = _resized_crop(img, cfg.resized_crop_size, rng)
        note("resized_crop", img.size)
    if coin(cfg.color_jitter):
        img = _color_jitter(img, rng)
        note("color_jitter")
    if coin(cfg.grayscale):
        img = img.convert("L").convert("RGB")
        note("grayscale")
    if coin(cfg.cutout):
        img = _cutout(img, rng)
        note("cutout")
    if coin(cfg.noise):
        img = _noise(img, rng)
        note("noise")
    if cfg.downscale and coin(cfg.downscale):  # no draw when off: older configs keep their exact stream
        img = _downscale(img, cfg.downscale_min, rng)
        note("downscale", img.size)
    if coin(cfg.blur):
        sigma = float(rng.uniform(0.0, 3.0))
        img = img.filter(ImageFilter.GaussianBlur(sigma))
        note("blur", round(sigma, 6))
    if coin(cfg.jpeg):
        q = int(rng.integers(30, 101))
        img = _encode(img, "JPEG", q)
        note("jpeg", q)
    if coin(cfg.webp):
        q = int(rng.integers(30, 101))
        img = _encode(img, "WEBP", q)
        note("webp", q)
    if coin(cfg.rotate90):
        k = int(rng.integers(0, 4))
        if k:
            img = img.transpose([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270][k - 1])
        note("rotate90", k)
    if coin(cfg.flip):
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        note("flip")
    if coin(cfg.crop):
        img = _random_crop(img, cfg.crop_size, rng)
        note("crop", img.size)
    return img


def augment_pair(real: Image.Image, fake: Image.Image, cfg: AugmentConfig, seed, logs: tuple | None = None):
    """The same random transform on a real image and its reconstruction."""
    if real.size != fake.size:
        raise DataError(f"paired images differ in size ({real.size} vs {fake.size}); aligned pairs keep the size")
    a = augment(real, cfg, np.random.default_rng(seed), logs[0] if logs else None)
    b = augment(fake, cfg, np.random.default_rng(seed), logs[1] if logs else None)
    return a, b
