"""A corpus of hostile and broken image bytes, built here (nothing downloaded), for every
surface that decodes uploads: `fakedet predict`, Detector.predict, score_blobs, the HTTP
service. `hostile_images()` and `good_images()` return (name, bytes) pairs; names carry the
extension an uploader would give them (a DDS header is named .jpg, as in the attack)."""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image

# magic bytes for the formats Pillow opens but cannot write (and two it writes only oddly)
MAGIC = {
    "BLP": b"BLP2" + struct.pack("<I", 1) + bytes([9, 8, 7, 0]) + struct.pack("<II", 16, 16),
    "BUFR": b"BUFR" + b"\x00" * 60,
    "CUR": b"\x00\x00\x02\x00\x01\x00" + b"\x10\x10\x00\x00\x01\x00\x20\x00" + struct.pack("<II", 10**6, 22),
    "DCX": struct.pack("<I", 987654321) + struct.pack("<I", 9999),
    "FITS": b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  =                   16" + b" " * 49
            + b"NAXIS   =                    2" + b" " * 49 + b"END" + b" " * 77,
    "FLI": struct.pack("<I", 200) + struct.pack("<HHHH", 0xAF11, 1, 16, 16) + b"\x00" * 116,
    "FTEX": b"FTEX" + struct.pack("<IIIII", 0x0B, 16, 16, 1, 1) + struct.pack("<III", 7, 16, 0),
    "GBR": struct.pack(">IIIII", 28, 2, 16, 16, 9) + b"GIMP" + b"\x00" * 8,
    "GRIB": b"GRIB\x00\x00\x00\x01" + b"\x00" * 56,
    "HDF5": b"\x89HDF\r\n\x1a\n" + b"\x00" * 56,
    "IMT": b"\x0c\x0a" + b"width 16\nheight 16\npixel n8\n\x0c",
    "IPTC": b"\x1c\x02\x00\x00\x02" + b"\x1c\x08\x0a\x80\x04\xff\xff\xff\xff",
    "MCIDAS": b"\x00\x00\x00\x00\x00\x00\x00\x04" + b"\xff" * 248,
    "MPEG": b"\x00\x00\x01\xb3" + b"\xff\xff\xff\xff",
    "PCD": b"\x00" * 2048 + b"PCD_IPI" + b"\x00" * 64,
    "PIXAR": b"\x80\xe8\x00\x00" + b"\xff" * 508,
    "PSD": b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 16, 16, 8, 3) + struct.pack(">I", 0xFFFFFFF0),
    "SUN": b"\x59\xa6\x6a\x95" + struct.pack(">IIIIIII", 16, 16, 24, 10**9, 1, 0, 0),
    "WMF": b"\xd7\xcd\xc6\x9a\x00\x00" + struct.pack("<hhhh", -32768, -32768, 32767, 32767) + b"\x00" * 10,
    "XPM": b"/* XPM */\nstatic char *x[] = {\n\"16 16 999999 1\",\n",
    "XVTHUMB": b"P7 332\n#END_OF_COMMENTS\n16 16 255\n" + b"\x01" * 10,
}


def _array(size=(24, 20), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def encode(fmt: str, size=(24, 20), seed=0, mode="RGB") -> bytes:
    img = Image.fromarray(_array(size, seed), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def good_images() -> list[tuple[str, bytes]]:
    """Ordinary uploads in the formats fakedet accepts."""
    return [(f"good{i}.{ext}", encode(fmt, seed=10 + i)) for i, (fmt, ext) in
            enumerate([("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif"),
                       ("GIF", "gif")])]  # fmt: skip


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height and carries no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def dds_header_named_jpg() -> bytes:
    """128 bytes: a DDS header with an unknown FourCC (Pillow raised NotImplementedError)."""
    head = struct.pack("<7I", 124, 0x1007, 16, 16, 0, 0, 0) + b"\x00" * 44
    pixel_format = struct.pack("<II4s5I", 32, 0x4, b"ZZZZ", 0, 0, 0, 0, 0)
    return b"DDS " + head + pixel_format + b"\x00" * (124 - len(head) - len(pixel_format))


def tiff_rational_strip_offsets() -> bytes:
    """A TIFF whose StripOffsets tag is a RATIONAL (Pillow raised TypeError)."""
    entries = [(256, 3, 1, 16), (257, 3, 1, 16), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 5, 1, 8 + 2 + 8 * 12 + 4), (278, 3, 1, 16), (279, 4, 1, 256)]  # fmt: skip
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<HHI", tag, typ, count)
        ifd += packed + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<II", 1, 3) + b"\x7f" * 256


def eps_header() -> bytes:
    """PostScript: never handed to Ghostscript, whatever the extension."""
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\nshowpage\n%%EOF\n"


def _mutations(fmt: str, data: bytes) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(len(data))
    out = [(f"{fmt}-header-only", data[:32]), (f"{fmt}-half", data[: len(data) // 2]),
           (f"{fmt}-no-last-byte", data[:-1])]  # fmt: skip
    for k in range(3):  # flip bytes in the header region, where parsers trust sizes and offsets
        b = bytearray(data)
        for i in rng.integers(0, min(len(b), 96), 4):
            b[i] ^= int(rng.integers(1, 256))
        out.append((f"{fmt}-flipped{k}", bytes(b)))
    b = bytearray(data)
    b[len(b) // 3 : len(b) // 3 + 16] = b"\xff" * 16  # a run of 0xff inside the body
    out.append((f"{fmt}-ff-run", bytes(b)))
    return out


@functools.lru_cache(maxsize=1)
def _crafted() -> tuple:
    return tuple(_build_crafted().items())


def crafted_per_format() -> dict[str, list[tuple[str, bytes]]]:
    """For every format Pillow can open: mutated encodings (where Pillow can write it) or a
    crafted header (where it cannot)."""
    return {fmt: list(items) for fmt, items in _crafted()}


def _build_crafted() -> dict[str, list[tuple[str, bytes]]]:
    """For every format Pillow can open: mutated encodings (where Pillow can write it) or a
    crafted header (where it cannot)."""
    Image.init()
    out: dict[str, list[tuple[str, bytes]]] = {}
    for fmt in sorted(Image.OPEN):
        data = None
        for mode in ("RGB", "L", "1", "P"):
            try:
                data = encode(fmt, (16, 16), 1, mode)
                break
            except Exception:  # Pillow cannot write this format in this mode
                continue
        if data and len(data) > 1 << 16:  # ICNS writes every icon size: its first 64 KB are enough
            data = data[: 1 << 16]
        items = _mutations(fmt, data) if data else []
        if fmt in MAGIC:
            items.append((f"{fmt}-crafted", MAGIC[fmt]))
        if data:
            items.append((f"{fmt}-valid-but-maybe-refused", data))
        out[fmt] = [(f"crafted-{name}.jpg", blob) for name, blob in items]
    return out


def hostile_images() -> list[tuple[str, bytes]]:
    """Every hostile or broken item: the issue's cases, the earlier bad-file cases, and the
    crafted headers of every format Pillow can open."""
    jpeg = encode("JPEG")
    items = [
        ("dds-header.jpg", dds_header_named_jpg()),
        ("blp.jpg", MAGIC["BLP"]),
        ("tiff-rational-stripoffsets.tif", tiff_rational_strip_offsets()),
        ("postscript.jpg", eps_header()),
        ("empty.jpg", b""),
        ("notes.jpg", b"these are notes, not pixels"),
        ("soi-only.jpg", b"\xff\xd8 not really"),
        ("png-truncated.png", b"\x89PNG truncated"),
        ("jpeg-half.jpg", jpeg[: len(jpeg) // 2]),
        ("bomb-declared-30000x30000.png", png_header(30000, 30000)),
        ("zero-width.png", png_header(0, 16)),
        ("huge-gif.gif", b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b"," + b"\x00" * 9 + b";"),
    ]
    for group in crafted_per_format().values():
        items.extend(group)
    return items
