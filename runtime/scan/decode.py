"""Read one archive image and prepare it for the model: its size and sha256 (of the bytes
as stored), and the model's input tensor, or the error that costs this image only.

The runtime's own decoder (imageio.load_image: format allow-list, pixel limit, EXIF
orientation, mode conversion) and preprocessing run here, so a scan decodes exactly as
`fakedet predict` and the service do. Used by the local engine (through its Detector's
budgeted decode workers) and by the Ray engine's decode tasks."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass

import numpy as np

from fakedet.errors import FakedetError, ImageError, first_line

from ..imageio import load_image
from ..preprocess import preprocess_image


@dataclass
class Prepared:
    path: str
    size: int | None = None
    sha256: str | None = None
    tensor: np.ndarray | None = None  # or a runtime.tiled_scoring.TiledImage (local engine)
    error: str | None = None
    seconds: float = 0.0  # reading, hashing, decoding and preprocessing


def read_bytes(path: str) -> bytes:
    """The file's bytes; OSError-free: raises ImageError with a one-line reason."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except OSError as e:
        raise ImageError(path, f"cannot read: {first_line(e)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(path, "is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
        raise ImageError(path, "not a regular file")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ImageError(path, f"cannot read: {first_line(e)}") from None


def prepare_path(path: str, input_spec, to_tensor=None) -> Prepared:
    """`to_tensor(data, path)`: bytes -> the model's input (default: decoded and
    preprocessed here; the local engine passes its Detector's budgeted `prepare`)."""
    t0 = time.perf_counter()
    out = Prepared(path=str(path))
    try:
        data = read_bytes(out.path)
        out.size = len(data)
        out.sha256 = hashlib.sha256(data).hexdigest()
        if to_tensor is None:
            img = load_image(data, input_spec.preprocess.max_pixels)
            out.tensor = preprocess_image(img, input_spec, out.path)
        else:
            out.tensor = to_tensor(data, out.path)
    except ImageError as e:
        out.error = e.problem
    except FakedetError as e:
        out.error = str(e)
    except Exception as e:  # whatever a decoder raises on hostile bytes costs this image only
        out.error = f"cannot prepare the image: {type(e).__name__}: {first_line(e)}"
    out.seconds = time.perf_counter() - t0
    return out
