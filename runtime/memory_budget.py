"""The largest image a model may take, from a memory budget rather than a fixed pixel count.

A whole-image model's memory grows with the pixels: its activations (the demo's
resnet-tiny-nodown: ~200 bytes per pixel) plus the decoded pixels and the float32 input
tensor. The cost per pixel is measured once, on this machine and backend: the process's
peak resident memory (VmHWM, reset through /proc/self/clear_refs) while the model runs on
a probe image. Models of a fixed input size cost the same for any image once resized, so
only their decode counts (a few bytes per pixel). A model scored in exact tiles
(runtime.tiled_scoring) holds one tile's activations whatever the image: its limit is the
uint8 image's (~13 bytes per pixel), and the tile's side comes from the budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tiled_scoring import side_for_bytes

DEFAULT_MAX_MEMORY = 4 * 2**30  # predict's budget; serve takes --max-memory
DECODE_BYTES_PER_PIXEL = 3 + 3 + 3  # the worker's RGB, the bytes it sends, the image rebuilt from them
TENSOR_BYTES_PER_PIXEL = 3 * 4  # the float32 input
PROBE_SIDE = 384
# tiled scoring (runtime.tiled_scoring): the image stays uint8, one tile's activations at a time
GEOMETRY_BYTES_PER_PIXEL = 3  # the uint8 array the tiles are cut from
MAP_BYTES_PER_PIXEL = 1  # the stitched evidence map (4 bytes a cell, a cell per 8x8 pixels or more) and slack
DEFAULT_TILE_BYTES = 256 * 2**20
TILE_SHARE = 0.25  # of the free budget, at most DEFAULT_TILE_BYTES


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def resident_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def model_bytes_per_pixel(detector) -> float | None:
    """Peak memory per input pixel while `detector`'s model runs on a PROBE_SIDE square
    (None where the kernel cannot tell: no /proc, or no peak reset)."""
    give_back_heap()  # free pages kept from earlier work would hide the probe's growth
    before = resident_bytes()
    if before is None or not _reset_peak():
        return None
    x = np.zeros(detector.manifest.input.tensor_shape(1, (PROBE_SIDE, PROBE_SIDE)), np.float32)
    try:
        detector.warmup_tensor(x)
    except Exception:  # a model the probe cannot feed: the caller assumes a generous cost
        return None
    peak = _status_kb("VmHWM")
    return None if peak is None else max(0.0, peak * 1024 - before) / PROBE_SIDE**2


@dataclass
class PixelBudget:
    max_pixels: int
    why: str  # the words an error uses: which budget, at how many bytes per pixel


def pixel_budget(detector, max_memory: int, option: str = "the memory budget", tiler=None) -> PixelBudget:
    """The pixel limit `max_memory` bytes allow `detector` (its resident memory now counted).
    With a `tiler` (runtime.tiled_scoring) the model's activations are one tile's: the tile
    side is set from the budget here, and the limit is the uint8 image's."""
    whole_image = detector.manifest.input.preprocess.policy == "whole-image"
    per_pixel = DECODE_BYTES_PER_PIXEL
    model = 0.0
    if whole_image:
        measured = model_bytes_per_pixel(detector)
        model = TENSOR_BYTES_PER_PIXEL + (measured if measured is not None else 256.0)
    in_use = resident_bytes() or 0
    free = max_memory - in_use
    if tiler is not None:
        tile_bytes = min(DEFAULT_TILE_BYTES, max(free, 0) * TILE_SHARE)
        tiler.set_tile_side(side_for_bytes(tile_bytes, model))
        per_pixel += GEOMETRY_BYTES_PER_PIXEL + MAP_BYTES_PER_PIXEL
        free -= tiler.tile_side ** 2 * model
        how = (f"~{per_pixel:.0f} bytes per pixel for the image and {_gb(tiler.tile_side ** 2 * model)} for one "
               f"{tiler.tile_side}-pixel tile")
    else:
        per_pixel += model
        how = f"~{per_pixel:.0f} bytes per pixel for this model"
    limit = max(1, int(free / per_pixel))
    return PixelBudget(limit, f"{option} {_gb(max_memory)} with {_gb(in_use)} in use, at {how}")


LARGE_TENSOR_BYTES = 8 * 2**20


def any_large(tensors) -> bool:
    return any(getattr(t, "nbytes", 0) >= LARGE_TENSOR_BYTES for t in tensors)


def give_back_heap() -> None:
    """After scoring a large tensor: hand the C heap's free pages back to the system
    (glibc keeps freed blocks below its mmap threshold: ~40 MB after a 1000x1000 image);
    callers skip it after small images, where it would cost for nothing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if abs(n) >= 1e8 else f"{n / 1e6:.0f} MB"
