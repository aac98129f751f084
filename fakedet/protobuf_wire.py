"""Protocol-buffer wire format, field by field, for readers of ONNX files that must not need
the `onnx` package (the runtime). Bounds are checked on every step: the bytes come from
whoever made the file."""

from __future__ import annotations

MAX_NESTING = 64


class Malformed(ValueError):
    """The bytes are not a well-formed protobuf message."""


def varint(buf, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`."""
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise Malformed("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _skip_group(buf, pos: int, end: int, field: int) -> int:
    open_groups = [field]
    while open_groups:
        key, pos = varint(buf, pos, end)
        f, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            n, pos = varint(buf, pos, end)
            pos += n
        elif wire == 5:
            pos += 4
        elif wire == 3:
            if len(open_groups) > MAX_NESTING:
                raise Malformed("nested too deeply")
            open_groups.append(f)
        elif wire == 4 and open_groups[-1] == f:
            open_groups.pop()
        else:
            raise Malformed(f"wire type {wire}")
        if pos > end:
            raise Malformed("group runs past its message")
    return pos


def fields(buf, start: int = 0, end: int | None = None):
    """(field number, wire type, value) of each field of the message in buf[start:end]: an int
    for varint and fixed-size fields, (start, end) of the bytes of a length-delimited one.
    (Deprecated) groups are skipped."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos, end)
            yield field, wire, value
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise Malformed("field runs past its message")
            yield field, wire, int.from_bytes(buf[pos:pos + size], "little")
            pos += size
        elif wire == 2:
            n, pos = varint(buf, pos, end)
            if pos + n > end:
                raise Malformed("field runs past its message")
            yield field, wire, (pos, pos + n)
            pos += n
        elif wire == 3:
            pos = _skip_group(buf, pos, end, field)
        else:
            raise Malformed(f"wire type {wire}")
    if pos != end:
        raise Malformed("message runs past its end")
