"""The one preprocessing implementation: training, calibration, evaluation and
inference all call these functions, so a model sees the same tensor everywhere."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fakedet.errors import ImageError
from fakedet.manifest import InputSpec, Preprocess

from .imageio import load_image, source_name

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def resize_shorter(img: Image.Image, shorter: int, interpolation: str) -> Image.Image:
    """Resize so the shorter side is `shorter`, keeping aspect (long side truncated, as torchvision does)."""
    w, h = img.size
    if w <= h:
        new_w, new_h = shorter, int(shorter * h / w)
    else:
        new_w, new_h = int(shorter * w / h), shorter
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), RESAMPLE[interpolation])


def pad_to(arr: np.ndarray, height: int, width: int, value: int) -> np.ndarray:
    """Pad symmetrically (extra pixel on the bottom/right) up to at least height x width."""
    h, w = arr.shape[:2]
    ph, pw = max(height - h, 0), max(width - w, 0)
    if ph == 0 and pw == 0:
        return arr
    top, left = ph // 2, pw // 2
    return np.pad(arr, ((top, ph - top), (left, pw - left), (0, 0)), constant_values=value)


def center_crop(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = arr.shape[:2]
    top = int(round((h - height) / 2.0))
    left = int(round((w - width) / 2.0))
    return arr[top : top + height, left : left + width]


def geometry(img: Image.Image, pre: Preprocess, name: str = "<image>") -> np.ndarray:
    """Apply the policy's geometric step to an RGB image: uint8 HxWx3."""
    if pre.policy == "resize":
        h, w = pre.size
        return np.asarray(img.resize((w, h), RESAMPLE[pre.interpolation]) if img.size != (w, h) else img)
    if pre.policy == "resize-center-crop":
        img = resize_shorter(img, pre.resize_shorter, pre.interpolation)
        h, w = pre.size
        return center_crop(pad_to(np.asarray(img), h, w, pre.pad_value), h, w)
    if pre.policy == "center-crop":
        h, w = pre.size
        if img.height < h or img.width < w:
            if pre.small_images == "refuse":
                raise ImageError(name, f"{img.width}x{img.height} is smaller than the {w}x{h} crop this model needs")
            if pre.small_images == "upscale":
                img = resize_shorter(img, max(h, w), pre.interpolation)
        return center_crop(pad_to(np.asarray(img), h, w, pre.pad_value), h, w)
    # whole-image
    arr = np.asarray(img)
    m = pre.multiple_of
    if m > 1:
        hh, ww = arr.shape[:2]
        th, tw = -(-hh // m) * m, -(-ww // m) * m
        if (th, tw) != (hh, ww):
            arr = np.pad(arr, ((0, th - hh), (0, tw - ww), (0, 0)), constant_values=pre.pad_value)
    return arr


def normalize(arr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 tensor in the spec's layout and channel order:
    (x / 255 - mean) / std, computed in float32 (the same ops as torchvision's
    ToTensor + Normalize, so the two agree bit for bit).

    The channel flip and the layout change happen on the uint8 pixels, and the arithmetic
    in place on the one float32 copy: a 4000x4000 image costs one 192 MB tensor, not five."""
    if spec.channel_order == "BGR":
        arr = arr[..., ::-1]
    nchw = spec.layout == "NCHW"
    if nchw:
        arr = arr.transpose(2, 0, 1)
    x = np.ascontiguousarray(arr, dtype=np.float32)  # the one float copy, already in its final layout
    shape = (3, 1, 1) if nchw else (3,)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    if spec.channel_order == "BGR":
        mean, std = mean[::-1], std[::-1]
    np.divide(x, np.float32(255.0), out=x)
    np.subtract(x, mean.reshape(shape), out=x)
    np.divide(x, std.reshape(shape), out=x)
    return x


def preprocess_image(img: Image.Image, spec: InputSpec, name: str = "<image>") -> np.ndarray:
    """An already decoded RGB image -> the model's float32 input tensor (no batch axis)."""
    return normalize(geometry(img, spec.preprocess, name), spec)


def preprocess(source, spec: InputSpec) -> np.ndarray:
    """A path, bytes, array or PIL image -> the model's float32 input tensor (no batch axis)."""
    img = load_image(source, spec.preprocess.max_pixels)
    return preprocess_image(img, spec, source_name(source))
