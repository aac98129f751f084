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


def decode_seconds(data: bytes) -> float:
    import time

    t0 = time.perf_counter()
    Image.open(io.BytesIO(data)).load()
    return time.perf_counter() - t0


def slow_bomb(target_s: float, max_side: int = 6144) -> tuple[bytes, float]:
    """(a scan bomb under the scan limit, its expected decode seconds on this machine now):
    a 2048-px one is timed and the image grown towards `target_s` (a luma scan's cost is
    proportional to the pixels; estimates run up to ~30% high), up to `max_side` (38 Mpx:
    ~0.3 GB a decode). Tests pin their deadlines to this cost, not to the machine."""
    from fakedet.runtime.jpeg_scans import MAX_JPEG_SCANS

    probe = 2048
    per_pixel = decode_seconds(scan_bomb(MAX_JPEG_SCANS - 10, (probe, probe))) / probe**2
    side = int(min(max_side, max(probe, (target_s / per_pixel) ** 0.5))) // 16 * 16
    return scan_bomb(MAX_JPEG_SCANS - 10, (side, side)), per_pixel * side**2
