"""Count a JPEG's scans from its markers, before anything decodes it.

Each progressive scan makes libjpeg revisit every coefficient block of the image, so a
file that repeats a tiny scan thousands of times costs seconds per 10 KB: a "scan bomb".
Real encoders write at most a few dozen scans (libjpeg's progressive script: 10)."""

from __future__ import annotations

MAX_JPEG_SCANS = 100

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = {0x01} | set(range(0xD0, 0xD8))  # TEM, RST0-7: no length field
_SOF_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}


def _skip_entropy_data(data: bytes, pos: int) -> int:
    """From inside a scan's entropy-coded data to the next marker: 0xFF is stuffed as FF00
    there, and RSTn markers belong to the scan."""
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            return n
        nxt = data[pos + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
            pos += 1 if nxt == 0xFF else 2
            continue
        return pos


def jpeg_scans(data: bytes) -> tuple[int, bool] | None:
    """(number of scans, progressive?) for JPEG bytes; None when `data` is not a JPEG.
    Truncated or malformed marker streams count what was seen (the decoder reports them)."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != _SOI:
        return None
    scans, progressive, pos, n = 0, False, 2, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:  # garbage between segments: libjpeg skips to the next marker too
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            break
        if marker in _STANDALONE or marker == _SOI:
            pos += 2
            continue
        if pos + 3 >= n:
            break
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker in _SOF_PROGRESSIVE:
            progressive = True
        pos += 2 + length
        if marker == _SOS:
            scans += 1
            pos = _skip_entropy_data(data, pos)
    return scans, progressive


def scan_problem(data: bytes, limit: int = MAX_JPEG_SCANS) -> str | None:
    """The reason to refuse these bytes before decoding (too many scans), or None."""
    found = jpeg_scans(data)
    if found is None or found[0] <= limit:
        return None
    scans, progressive = found
    return f"{'progressive ' if progressive else ''}JPEG with {scans} scans, limit {limit} (a decode-cost bomb)"
