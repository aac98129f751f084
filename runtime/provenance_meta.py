"""Declared provenance that is only a claim: IPTC DigitalSourceType in XMP, and generator
hints in EXIF Software and PNG text chunks. Read from the container's header with Pillow's
lazy open (no pixels decoded); XMP is searched with bounded patterns, never parsed as XML
(no entity expansion, no recursion on deep nesting)."""

from __future__ import annotations

import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

from .imageio import accepted_formats

IPTC_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"
GENERATED = ("trainedAlgorithmicMedia", "algorithmicMedia")
COMPOSITE = ("compositeWithTrainedAlgorithmicMedia", "compositeSynthetic")
CAPTURE = ("digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print")
PNG_TEXT_KEYS = ("parameters", "prompt", "workflow", "Software")
# Software names that say the image was generated (EXIF Software / XMP CreatorTool / PNG Software)
GENERATOR_NAMES = re.compile(
    r"stable.?diffusion|midjourney|dall.?e|firefly|comfyui|automatic1111|novelai|imagen|flux|sdxl|invokeai|"
    r"leonardo|ideogram|generative fill", re.IGNORECASE)
_DST = re.compile(
    rb"DigitalSourceType(?:\s*=\s*[\"']([^\"'<>]{1,300})[\"']|>\s{0,64}([^<\s]{1,300})\s{0,64}<"
    rb"|[^>]{0,300}?rdf:resource\s*=\s*[\"']([^\"'<>]{1,300})[\"'])")
_CREATOR_TOOL = re.compile(rb"CreatorTool(?:\s*=\s*[\"']([^\"'<>]{1,300})[\"']|>\s{0,64}([^<]{1,300})<)")
MAX_HINT = 200


class ProvenanceError(Exception):
    """A metadata block this reader refuses (too big, unreadable); costs the provenance only."""


def source_kind(code: str | None) -> str:
    """An IPTC digital source type (full URI or bare code) -> the summary word."""
    if not code:
        return "none"
    term = code.rsplit("/", 1)[-1]
    if term in GENERATED:
        return "declared-generated"
    if term in COMPOSITE:
        return "declared-composite"
    if term in CAPTURE:
        return "declared-capture"
    return "none"


def _first(match) -> str | None:
    if not match:
        return None
    raw = next(g for g in match.groups() if g is not None)
    return raw.decode("utf-8", "replace").strip()[:300]


def xmp_claims(xmp: bytes, max_bytes: int) -> dict:
    """{digital_source_type, creator_tool} from an XMP packet of at most max_bytes."""
    if len(xmp) > max_bytes:
        raise ProvenanceError(f"XMP packet of {len(xmp)} bytes is over the {max_bytes}-byte limit")
    return {"digital_source_type": _first(_DST.search(xmp)), "creator_tool": _first(_CREATOR_TOOL.search(xmp))}


def _hint(field: str, value) -> dict:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return {"field": field, "value": text[:MAX_HINT], "names_generator": bool(GENERATOR_NAMES.search(text[:4096]))}


def _exif_software(img, info: dict):
    """EXIF Software from the header's EXIF block. Never img.getexif(): on a PNG without an
    eXIf chunk before the pixels it decodes the whole image (a bomb header would allocate it)."""
    if img.format == "TIFF":
        return img.tag_v2.get(0x0131)
    raw = info.get("exif")
    if not isinstance(raw, bytes):
        return None
    exif = Image.Exif()
    exif.load(raw)
    return exif.get(0x0131)


def read_claims(data: bytes, max_xmp_bytes: int) -> dict:
    """XMP digital source type and generator hints of an encoded image (bytes)."""
    try:  # header only (no pixels decoded), and only the decoders the runtime accepts
        img = Image.open(io.BytesIO(data), formats=accepted_formats())
    except (UnidentifiedImageError, ValueError):
        raise ProvenanceError("not an image in an accepted format: no metadata read") from None
    with img, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data": the hints are best effort
        info = dict(img.info)
        software = _exif_software(img, info)
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or b""
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "replace")
    claims = xmp_claims(xmp, max_xmp_bytes) if xmp else {"digital_source_type": None, "creator_tool": None}
    hints = []
    if software:
        hints.append(_hint("EXIF Software", software))
    if claims["creator_tool"]:
        hints.append(_hint("XMP CreatorTool", claims["creator_tool"]))
    for key in PNG_TEXT_KEYS:
        if isinstance(info.get(key), (str, bytes)):
            hint = _hint(f"PNG text {key}", info[key])
            hint["names_generator"] = hint["names_generator"] or key in ("parameters", "prompt", "workflow")
            hints.append(hint)
    return {"xmp": {"present": bool(xmp), "digital_source_type": claims["digital_source_type"]},
            "generator_hints": hints}
