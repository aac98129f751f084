"""Images that cost far more to decode than their size suggests, made on the spot."""

from __future__ import annotations

import io

from PIL import Image


def _sos_segments(data: bytes) -> list[bytes]:
    """The scans of a JPEG Pillow wrote: each from its SOS marker to the next SOS (or EOI).
    Pillow's entropy data has every 0xFF stuffed (FF00), so FFDA only starts a scan."""
    starts, pos = [], data.find(b"\xff\xda")
    while pos >= 0:
        starts.append(pos)
        pos = data.find(b"\xff\xda", pos + 2)
    ends = starts[1:] + [data.rfind(b"\xff\xd9")]
    return [data[s:e] for s, e in zip(starts, ends)]


def progressive_jpeg(size=(256, 256), value=(120, 130, 140)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, value).save(buf, "JPEG", progressive=True, quality=90)
    return buf.getvalue()


def scan_bomb(extra_scans: int, size=(2048, 2048)) -> bytes:
    """A valid progressive JPEG of a flat image with its shortest scan repeated `extra_scans`
    more times: each repeat is ~20 bytes, and libjpeg walks every block of the image for it.
    The scan repeated is the shortest AC scan of the luma (component 1: full resolution), so
    the cost grows with the pixels at any size (a chroma scan, shortest at some sizes, walks
    a quarter of the blocks)."""
    data = progressive_jpeg(size)
    segments = _sos_segments(data)
    # SOS: FFDA, length (2), component count, component id, tables, Ss (spectral start) ...
    luma_ac = [s for s in segments if s[4] == 1 and s[5] == 1 and s[7] > 0]
    scan = min(luma_ac or segments, key=len)
    eoi = data.rfind(b"\xff\xd9")
    return data[:eoi] + scan * extra_scans + data[eoi:]
