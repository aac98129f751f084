"""Request bodies read in memory under a byte limit enforced while they stream in.

Nothing touches the disk: a multipart body is parsed as it arrives (python-multipart's
push parser) into one bytes object per part; a raw body is one image.

Captions: text parts named 'caption' of a multipart body (in their order), or
`?caption=` (percent-encoded) on the query string; UTF-8 only, each at most
`max_caption_bytes`. How many a request may carry is the service's rule (app.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CAPTION_FIELD = "caption"
# RFC 2046 section 5.1.1: 1 to 70 characters from this set, not ending in a space.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class BodyTooLarge(Exception):
    def __init__(self, limit: int, declared: bool = False):
        self.declared = declared  # refused from Content-Length, before reading any of it
        super().__init__(f"the request body exceeds the limit of {limit} bytes (--max-bytes)")


class BadBody(Exception):
    """A body that is not what the endpoint takes (malformed multipart, no image, a
    caption that is not UTF-8)."""


class CaptionTooLarge(Exception):
    def __init__(self, where: str, size: int, limit: int):
        super().__init__(f"{where} is {size} bytes; this service takes captions of at most {limit} bytes "
                         "(--max-caption-bytes)")


@dataclass
class Part:
    name: str  # the part's filename, else its field name
    data: bytes


@dataclass
class Upload:
    images: list[Part] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)  # in the order they came


def declared_length(headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadBody(f"Content-Length '{value}' is not a number") from None


def caption_text(data: bytes, where: str, max_caption_bytes: int) -> str:
    """A caption's bytes as text: UTF-8 only (BadBody otherwise), at most `max_caption_bytes`."""
    if len(data) > max_caption_bytes:
        raise CaptionTooLarge(where, len(data), max_caption_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadBody(f"{where} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                      "send captions as UTF-8") from None


def query_captions(query_string: bytes, max_caption_bytes: int) -> list[str]:
    """The `caption` values of a raw query string, percent-decoded as UTF-8 (strictly:
    Starlette's own query parsing replaces bad bytes, which would hide them)."""
    from urllib.parse import unquote_to_bytes

    out = []
    for pair in query_string.split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == CAPTION_FIELD.encode():
            out.append(caption_text(unquote_to_bytes(value.replace(b"+", b" ")), "the ?caption= value",
                                    max_caption_bytes))
    return out


async def read_upload(request, max_bytes: int, raw_name: str = "body", max_caption_bytes: int = 16384) -> Upload:
    """The images of a request: each part of a multipart/form-data body (text parts named
    'caption' are captions, not images), or the whole body as one image; captions also
    from `?caption=`. Raises BodyTooLarge as soon as more than `max_bytes` have arrived
    (or are announced), CaptionTooLarge, or BadBody (captions both in the query and in
    the body, a caption that is not UTF-8, malformed multipart)."""
    length = declared_length(request.headers)
    if length is not None and length > max_bytes:
        raise BodyTooLarge(max_bytes, declared=True)
    ctype = request.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/"):
        upload = await _read_multipart(request, ctype, max_bytes, max_caption_bytes)
    else:
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise BodyTooLarge(max_bytes)
            chunks.append(chunk)
        upload = Upload(images=[Part(raw_name, b"".join(chunks))])
    # Read after the body, so a client that sends it all before reading still gets the answer.
    from_query = query_captions(request.scope.get("query_string", b""), max_caption_bytes)
    if from_query and upload.captions:
        raise BadBody("captions both in ?caption= and in 'caption' form parts: send them one way")
    upload.captions = upload.captions or from_query
    return upload


async def _read_multipart(request, ctype: str, max_bytes: int, max_caption_bytes: int) -> Upload:
    from python_multipart.multipart import MultipartParser, parse_options_header

    try:
        kind, params = parse_options_header(ctype)
    except Exception as e:
        raise BadBody(f"malformed Content-Type header: {e}") from None
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadBody("multipart bodies must be multipart/form-data with a boundary")
    if not _BOUNDARY.fullmatch(params[b"boundary"]):
        raise BadBody("malformed multipart boundary: RFC 2046 allows 1 to 70 letters, digits, spaces and "
                      f"'()+_,-./:=? (got {len(params[b'boundary'])} bytes)")
    parts: list[tuple[dict, bytearray]] = []
    header = {"field": b"", "value": b""}
    ended = []

    def on_end():
        ended.append(True)

    def on_part_begin():
        parts.append(({}, bytearray()))

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        parts[-1][0][header["field"].decode("latin-1").lower()] = header["value"]
        header["field"] = header["value"] = b""

    def on_part_data(data, start, end):
        parts[-1][1].extend(data[start:end])

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data, "on_end": on_end,
    })
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise BodyTooLarge(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except BodyTooLarge:
        raise
    except Exception as e:  # python-multipart raises its own errors and ValueError
        raise BadBody(f"malformed multipart body: {e}") from None
    if not ended:
        raise BadBody("malformed multipart body: it ends before its closing boundary")
    upload = Upload()
    for i, (headers, data) in enumerate(parts):
        _, disp = parse_options_header(headers.get("content-disposition", b""))
        field_name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename", b"").decode("utf-8", "replace")
        if field_name == CAPTION_FIELD and not filename:
            where = f"caption part {len(upload.captions) + 1}"
            upload.captions.append(caption_text(bytes(data), where, max_caption_bytes))
            continue
        upload.images.append(Part(filename or field_name or f"part{i}", bytes(data)))
    return upload
