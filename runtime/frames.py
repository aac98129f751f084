"""Video frames to the RGB arrays `Detector.predict` reads: the channel order is stated, never guessed."""

from __future__ import annotations

import numpy as np

CHANNEL_ORDERS = ("RGB", "BGR")


def frames_to_rgb(frames, channels: str) -> list:
    """uint8 HxWx3 frames in `channels` order -> RGB views (no copy for RGB)."""
    order = str(channels).upper()
    if order not in CHANNEL_ORDERS:
        raise ValueError(f"channels must be 'RGB' or 'BGR' (OpenCV's order), got {channels!r}")
    out = []
    for f in frames:
        if order == "BGR" and isinstance(f, np.ndarray) and f.ndim == 3 and f.shape[2] >= 3:
            f = f[..., 2::-1]
        out.append(f)
    return out
