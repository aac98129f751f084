"""Robust image decoding to 8-bit RGB: one bad file is an ImageError for that file, nothing more."""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fakedet.errors import ImageError, first_line
from fakedet.manifest import PIXEL_LIMIT

from .jpeg_scans import MAX_JPEG_SCANS, scan_problem

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".ppm", ".pgm", ".pbm", ".avif"}
)

# The formats an image may be decoded from: what cameras, phones, browsers and moderation
# queues send (JPEG includes MPO, PNG includes APNG). Pillow's other ~35 decoders (DDS, BLP,
# FITS, PSD, ...) are rarely exercised, so crafted headers crash them; EPS/PS would hand the
# bytes to Ghostscript where it is installed. HEIF counts when a plugin (pillow-heif) adds it.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF", "HEIF")

DEFAULT_MAX_PIXELS = 89_478_485
RUNTIME_MAX_PIXELS = PIXEL_LIMIT  # the runtime's own ceiling, whatever a package's max_pixels says

# Pillow's own bomb check fires only at 2x its limit; we check the declared size
# ourselves before decoding, so lift Pillow's and keep one rule.
Image.MAX_IMAGE_PIXELS = None

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I;16BS", "I;16LS", "I;16NS"}


def source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<bytes:{len(source)}>"
    if isinstance(source, np.ndarray):
        return f"<array:{'x'.join(map(str, source.shape))}>"
    if isinstance(source, Image.Image):
        return f"<image:{source.width}x{source.height}>"
    return f"<{type(source).__name__}>"


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB. Alpha is dropped (as the training loaders do);
    16-bit and 32-bit greyscale keep their top 8 bits."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT or mode == "I":
        arr = np.asarray(img).astype(np.int64)
        if mode == "I" and arr.size and arr.max() <= 255 and arr.min() >= 0:
            arr8 = arr.astype(np.uint8)
        else:
            arr8 = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2), "RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr8 = np.clip(np.nan_to_num(np.rint(arr)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2), "RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if mode == "PA":
        img = img.convert("RGBA")
    return img.convert("RGB")


def accepted_formats() -> list[str]:
    Image.init()
    return [f for f in ACCEPTED_FORMATS if f in Image.OPEN]


def _open(source, name: str) -> Image.Image:
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise ImageError(name, "no such file") from None
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(name, "is a directory, not an image")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            raise ImageError(name, "not a regular file")
        if st.st_size == 0:
            raise ImageError(name, "empty file (0 bytes)")
        return Image.open(p, formats=accepted_formats())
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(name, "empty input (0 bytes)")
        return Image.open(io.BytesIO(bytes(source)), formats=accepted_formats())
    raise ImageError(name, f"cannot read an image from {type(source).__name__}")


def _encoded_bytes(source) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    return bytes(source)


def load_image(source, max_pixels: int = DEFAULT_MAX_PIXELS, max_scans: int = MAX_JPEG_SCANS,
               limit_why: str = "decompression-bomb guard") -> Image.Image:
    """Decode a path, bytes, numpy array (HxW or HxWx3/4 uint8) or PIL image to 8-bit RGB.

    EXIF orientation is applied; a JPEG with more than `max_scans` scans is refused before
    it is decoded (each scan costs a pass over the whole image). Raises ImageError naming the
    source and the problem, for whatever a decoder raises (Pillow's plugins raise far more
    than OSError on crafted files); `limit_why` says where `max_pixels` comes from."""
    name = source_name(source)
    max_pixels = min(int(max_pixels), RUNTIME_MAX_PIXELS)
    if isinstance(source, np.ndarray):
        return _from_array(source, name)
    try:
        img = source if isinstance(source, Image.Image) else _open(source, name)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, f"not an image in an accepted format ({', '.join(accepted_formats())})") from None
    except Exception as e:
        raise ImageError(name, f"cannot open: {_describe(e)}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(name, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} ({limit_why})")
    if img.format in ("JPEG", "MPO") and not isinstance(source, Image.Image):
        try:
            too_many = scan_problem(_encoded_bytes(source), max_scans)
        except OSError as e:
            raise ImageError(name, f"cannot read: {_describe(e)}") from None
        if too_many:
            raise ImageError(name, too_many)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Exception as e:
        raise ImageError(name, f"cannot decode: {_describe(e)}") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block must not cost the image; use it unrotated
        pass
    try:
        return to_rgb(img)
    except Exception as e:
        raise ImageError(name, f"cannot convert mode {img.mode} to RGB: {_describe(e)}") from None


def _describe(e: BaseException) -> str:
    msg = first_line(e)
    return f"truncated file ({msg})" if "truncated" in msg.lower() else msg


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ImageError(name, f"arrays must be uint8 RGB (HxWx3), got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise ImageError(name, f"arrays must be HxWx3 uint8 RGB, got shape {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def walk(root: Path):
    """Everything below `root` (like Path.rglob("*"), symlinked folders not entered), walked
    with a stack instead of recursion: a folder nested thousands deep is no RecursionError.
    Unreadable folders (permissions, names too long) are skipped."""
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            path = folder / entry.name
            yield path
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
            except OSError:
                continue


def expand_paths(paths, recursive: bool = True) -> list:
    """Directories become their image files (sorted, recursively); files are kept as
    given, whatever their extension, so a wrong file is reported rather than skipped."""
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            it = walk(p) if recursive else p.iterdir()
            out.extend(sorted(q for q in it if is_image_file(q) and q.is_file()))
        else:
            out.append(p)
    return out
