"""Content credentials (C2PA): read and validated with the C2PA project's own library,
c2pa-python (the optional `provenance` extra). Without it the record says "not installed".
Offline: remote manifests and OCSP are never fetched."""

from __future__ import annotations

import io
import json

MAGIC_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"II*\x00", "image/tiff"),
               (b"MM\x00*", "image/tiff"), (b"GIF8", "image/gif"))
UNTRUSTED = "signingCredential.untrusted"
_context = None


def mime_of(data: bytes) -> str | None:
    for magic, mime in MAGIC_TYPES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "image/avif" if data[8:12] == b"avif" else "image/heic"
    return None


def may_hold_c2pa(data: bytes) -> bool:
    """A C2PA manifest store is a JUMBF box labelled c2pa: without those bytes there is none
    to read (the cheap test that spares most images the library call)."""
    return b"c2pa" in data and b"jumb" in data


def _library():
    global _context
    import c2pa  # the optional extra; ImportError -> "not installed"

    if _context is None:
        settings = c2pa.Settings.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
        _context = c2pa.Context(settings)
    return c2pa, _context


def c2pa_available() -> bool:
    try:
        _library()
    except Exception:
        return False
    return True


def _actions(manifest: dict) -> list[dict]:
    out = []
    for assertion in manifest.get("assertions") or []:
        if isinstance(assertion, dict) and str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions") or []:
                if isinstance(action, dict):
                    out.append({"action": str(action.get("action"))[:100],
                                "digitalSourceType": action.get("digitalSourceType")})
    return out[:32]


def _generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name, version = info[0].get("name"), info[0].get("version")
        return f"{name} {version}".strip() if version else str(name)
    return manifest.get("claim_generator")


def read_c2pa(data: bytes) -> dict:
    """{status: absent|valid|trusted|invalid|error|not installed, ...}. Never raises."""
    if not may_hold_c2pa(data):
        return {"status": "absent"}
    try:
        c2pa, context = _library()
    except Exception:
        return {"status": "not installed", "detail": "install fakedet[provenance] (c2pa-python) to read C2PA"}
    mime = mime_of(data)
    if mime is None:
        return {"status": "error", "error": "C2PA bytes in a container this reader does not know"}
    try:
        with c2pa.Reader(mime, io.BytesIO(data), context=context) as reader:
            store = json.loads(reader.json())
    except Exception as e:  # C2paError.ManifestNotFound and malformed boxes alike
        kind = type(e).__name__.lstrip("_").removeprefix("C2pa")
        if kind == "ManifestNotFound":
            return {"status": "absent"}
        return {"status": "error", "error": f"{kind}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    return _summarise(store)


def _summarise(store: dict) -> dict:
    manifest = (store.get("manifests") or {}).get(store.get("active_manifest")) or {}
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = [f.get("code") for f in results.get("failure") or [] if isinstance(f, dict)]
    state = str(store.get("validation_state") or ("Invalid" if failures else "Valid"))
    sig = manifest.get("signature_info") or {}
    actions = _actions(manifest)
    return {
        "status": {"Trusted": "trusted", "Valid": "valid"}.get(state, "invalid"),
        "validation_state": state,
        "failures": [c for c in failures if c != UNTRUSTED][:16],
        "signer_trusted": UNTRUSTED not in failures,
        "claim_generator": _generator(manifest),
        "actions": actions,
        "digital_source_type": next((a["digitalSourceType"] for a in actions if a.get("digitalSourceType")), None),
        "signer": {"issuer": sig.get("issuer"), "common_name": sig.get("common_name"), "alg": sig.get("alg")},
    }
