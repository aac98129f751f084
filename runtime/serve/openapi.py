"""The service's OpenAPI 3.1 description (GET /openapi.json) and a readable rendering of
it (GET /docs) that needs nothing from the internet."""

from __future__ import annotations

import html

_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "kind": {"type": "string"}, "message": {"type": "string"}}}}}
_RESULT = {
    "type": "object",
    "required": ["name", "score", "decision", "threshold", "error", "model", "backend", "timings_ms"],
    "properties": {
        "name": {"type": "string", "description": "the part's filename or field name; 'body' (or ?name=) for a raw body"},
        "score": {"type": ["number", "null"], "description": "P(fake); null when the image failed"},
        "logit": {"type": ["number", "null"]},
        "decision": {"enum": ["fake", "real", "error"]},
        "threshold": {"type": "number"},
        "operating_point": {"type": ["string", "null"], "description": "the named operating point that set the threshold"},
        "provenance": {"type": ["object", "null"], "description": "what the image declares about its origin (C2PA, "
                       "XMP DigitalSourceType, EXIF/PNG text): summary declared-generated | declared-composite | "
                       "declared-capture | none, verified (valid C2PA) or a claim; never changes the score"},
        "error": {"type": ["string", "null"], "description": "why this image got no score"},
        "model": {"type": "object", "properties": {"name": {"type": "string"}, "sha256": {"type": "string"},
                                                   "artifact": {"type": "string"}}},
        "backend": {"type": "string"},
        "timings_ms": {"type": "object", "properties": {
            "queue": {"type": ["number", "null"]},
            "decode": {"type": ["number", "null"], "description": "null when the image was refused before "
                                                                  "decoding (a missing caption)"},
            "infer": {"type": ["number", "null"], "description": "the whole batch this image ran in"},
            "batch": {"type": "integer", "description": "images in that batch"}}},
    },
}


_CAPTION_NOTE = {
    "type": "object",
    "description": "present when the request carried captions or the model takes them",
    "required": ["received", "used"],
    "properties": {"received": {"type": "boolean"}, "used": {"type": "boolean"},
                   "count": {"type": "integer", "description": "captions in the request"},
                   "reason": {"type": "string"}},
}


def _caption_text(service) -> str:
    info = service.caption_summary()
    if info is None:
        return ("This model is image-only: captions are accepted and ignored (the response's 'caption' "
                "says so).")
    return (f"This model reads each image with its caption (CLIP BPE, {info['context_length']} tokens, "
            f"longer captions cut). Captions: {info['per_request']}; another count is a 400. "
            f"Missing caption: {info['empty_caption_means']}. UTF-8 only (400 otherwise), at most "
            f"{info['max_caption_bytes']} bytes each (413).")


def _err(desc: str) -> dict:
    return {"description": desc, "content": {"application/json": {"schema": _ERROR}}}


def openapi_document(service) -> dict:
    cfg = service.config
    secured = [{"bearer": []}] if cfg.token else []
    detect = {
        "summary": "Score images: P(fake) per image",
        "description": (
            "One image as the raw body (any Content-Type, e.g. image/jpeg), or several as "
            "multipart/form-data with one part per image (each part named; text parts named "
            "'caption' are captions, not images). Concurrent requests are batched together "
            f"(up to {cfg.max_batch} images, waiting at most {cfg.max_delay_ms:g} ms), each image "
            "with its own caption. No server-side fetching: there is no ?url=. " + _caption_text(service)),
        "security": secured,
        "parameters": [
            {"name": "timeout_s", "in": "query", "required": False, "schema": {"type": "number", "exclusiveMinimum": 0},
             "description": f"answer 504 after this many seconds (at most the server's {cfg.timeout_s:g})"},
            {"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "name echoed for a raw-body image (default 'body')"},
            {"name": "caption", "in": "query", "required": False,
             "schema": {"type": "array", "items": {"type": "string"}}, "style": "form", "explode": True,
             "description": "caption(s), percent-encoded UTF-8, mainly for a raw-body image; the same count "
                            "rule as 'caption' form parts, and not together with them"},
        ],
        "requestBody": {"required": True, "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "additionalProperties": {
                "type": "string", "format": "binary"}, "properties": {"caption": {
                    "type": "array", "items": {"type": "string"},
                    "description": "text parts named 'caption' (no filename): one for all the images, or one "
                                   f"per image in the images' order; UTF-8, at most {cfg.max_caption_bytes} "
                                   "bytes each"}}},
                "encoding": {"caption": {"contentType": "text/plain; charset=utf-8"}}},
        }},
        "responses": {
            "200": {"description": "scores (images that failed carry their error)", "content": {"application/json": {
                "schema": {"type": "object", "properties": {"results": {"type": "array", "items": _RESULT},
                                                            "model": {"type": "object"},
                                                            "backend": {"type": "string"},
                                                            "caption": _CAPTION_NOTE}}}}},
            "400": _err("malformed request (no image, bad multipart, bad timeout_s, a caption that is not "
                        "UTF-8, a caption count that is neither 1 nor one per image)"),
            "401": _err("missing or wrong bearer token"),
            "408": _err("the body did not arrive in time"),
            "413": _err(f"body over {cfg.max_bytes} bytes (checked while it streams), more than "
                        f"{cfg.max_queue} images, or a caption over {cfg.max_caption_bytes} bytes"),
            "422": _err("no image in the request could be scored (each result says why)"),
            "503": _err("queue full, warming up or shutting down; see Retry-After"),
            "504": _err("not answered within the timeout"),
        },
    }

    def get(summary: str, desc: str, secure: bool = False, ctype: str = "application/json") -> dict:
        op = {"summary": summary, "description": desc, "responses": {"200": {"description": "OK", "content": {
            ctype: {}}}}}
        if secure:
            op["security"] = secured
            if cfg.token:
                op["responses"]["401"] = _err("missing or wrong bearer token")
        return {"get": op}

    doc = {
        "openapi": "3.1.0",
        "info": {"title": "fakedet serve", "version": "1",
                 "description": f"P(fake) for images with the model '{service.model['name']}' "
                                f"(sha256 {service.model['sha256'][:12]}...) on {service.backend}."},
        "paths": {
            "/v1/detect": {"post": detect},
            "/v1/model": get("Model summary", "the manifest's summary: input, output, threshold, artifact, "
                             "backend, service limits; 'caption_input' (does the model read captions) and "
                             "'captions' (context length, empty-caption rule, limits; null if image-only)", True),
            "/healthz": get("Liveness", "200 while the process serves HTTP"),
            "/readyz": get("Readiness", "200 once the model is loaded and warmed; 503 while warming up or "
                           "shutting down"),
            "/metrics": get("Prometheus metrics", "requests and errors by kind, queue depth, batch-size "
                            "histogram, latency histogram per stage", True, "text/plain"),
            "/": get("Moderation console", "drop images, see each score", ctype="text/html"),
            "/openapi.json": get("This description", "OpenAPI 3.1"),
            "/docs": get("This description, readable", "HTML", ctype="text/html"),
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
    doc["paths"]["/readyz"]["get"]["responses"]["503"] = _err("not ready (the reason is given)")
    return doc


def docs_html(doc: dict) -> str:
    esc = html.escape
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = "".join(f"<li><code>{esc(p['name'])}</code> ({esc(p['in'])}): {esc(p.get('description', ''))}</li>"
                             for p in op.get("parameters", []))
            codes = "".join(f"<li><b>{esc(c)}</b> {esc(r['description'])}</li>" for c, r in op["responses"].items())
            lock = " &#128274;" if op.get("security") else ""
            rows.append(f"<section><h2><code>{method.upper()} {esc(path)}</code>{lock}</h2>"
                        f"<p><b>{esc(op['summary'])}</b>. {esc(op.get('description', ''))}</p>"
                        f"{'<ul>' + params + '</ul>' if params else ''}<ul>{codes}</ul></section>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(doc['info']['title'])}</title>"
            "<style>body{font:14px system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
            "section{border-top:1px solid #ccc}code{background:#f3f3f3;padding:0 .2em}</style></head><body>"
            f"<h1>{esc(doc['info']['title'])}</h1><p>{esc(doc['info']['description'])}</p>"
            "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>"
            + "".join(rows) + "</body></html>")
