"""Provenance beside the score, never mixed into it: what an image declares about its origin.

    record = read_provenance(jpeg_bytes)
    record["summary"]   # declared-generated | declared-composite | declared-capture | none
    record["verified"]  # True: a cryptographically valid C2PA manifest says so; False: only a claim

Sources: C2PA content credentials (provenance_c2pa), IPTC DigitalSourceType in XMP and
generator hints in EXIF / PNG text (provenance_meta). Reading is bounded in bytes and time
and never raises: a broken or oversized block is the record's `error`, the image is scored.
"""

from __future__ import annotations

import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from .provenance_c2pa import read_c2pa
from .provenance_meta import ProvenanceError, read_claims, source_kind

_pool: ThreadPoolExecutor | None = None


@dataclass(frozen=True)
class ProvenanceLimits:
    max_bytes: int = 64 << 20  # a larger file gets no provenance (an error), its score still comes
    max_xmp_bytes: int = 1 << 20
    timeout_s: float = 2.0  # for the C2PA library (native code: its thread is left to finish)


DEFAULT_LIMITS = ProvenanceLimits()


def _empty() -> dict:
    return {"summary": "none", "verified": False, "basis": None, "c2pa": {"status": "absent"},
            "xmp": {"present": False, "digital_source_type": None}, "generator_hints": [], "error": None}


def _bytes_of(item, limit: int) -> bytes | None:
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
    elif isinstance(item, (str, os.PathLike)):
        st = Path(item).stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block
            raise ProvenanceError("not a regular file")
        size = st.st_size
        if size > limit:
            raise ProvenanceError(f"file of {size} bytes is over the {limit}-byte provenance limit")
        with open(item, "rb") as f:
            data = f.read(limit + 1)
    else:
        return None  # decoded pixels carry no metadata
    if len(data) > limit:
        raise ProvenanceError(f"{len(data)} bytes is over the {limit}-byte provenance limit")
    return data


def _c2pa_within(data: bytes, timeout_s: float) -> dict:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fakedet-c2pa")
    future = _pool.submit(read_c2pa, data)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        return {"status": "error", "error": f"C2PA reading took longer than {timeout_s:g} s"}


def read_provenance(item, limits: ProvenanceLimits = DEFAULT_LIMITS) -> dict | None:
    """The provenance record of a path or encoded bytes (None for arrays and PIL images)."""
    t0 = time.perf_counter()
    record = _empty()
    try:
        data = _bytes_of(item, limits.max_bytes)
        if data is None:
            return None
        record["c2pa"] = _c2pa_within(data, limits.timeout_s)
        record.update(read_claims(data, limits.max_xmp_bytes))
    except ProvenanceError as e:
        record["error"] = str(e)
    except Exception as e:  # a hostile header costs this record, never the item
        record["error"] = f"metadata unreadable: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    if record["c2pa"].get("status") == "error" and record["error"] is None:
        record["error"] = f"C2PA: {record['c2pa'].get('error')}"
    record.update(summarise(record))
    record["read_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
    return record


def summarise(record: dict) -> dict:
    """The strongest declaration: a valid C2PA manifest, else any claim (an invalid C2PA
    manifest, XMP, then generator names in EXIF / PNG text)."""
    c2pa = record["c2pa"]
    kind = source_kind(c2pa.get("digital_source_type"))
    if kind != "none" and c2pa.get("status") in ("valid", "trusted"):
        return {"summary": kind, "verified": True, "basis": "c2pa"}
    if kind != "none":
        return {"summary": kind, "verified": False, "basis": f"c2pa ({c2pa.get('status')})"}
    kind = source_kind(record["xmp"].get("digital_source_type"))
    if kind != "none":
        return {"summary": kind, "verified": False, "basis": "xmp"}
    named = [h for h in record["generator_hints"] if h.get("names_generator")]
    if named:
        return {"summary": "declared-generated", "verified": False, "basis": named[0]["field"]}
    return {"summary": "none", "verified": False, "basis": None}
