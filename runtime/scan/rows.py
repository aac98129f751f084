"""The result row of a scan: one per image, the same from every engine.

    path, size, sha256      the image as stored (size and sha256 of its bytes; null when unreadable)
    p_fake, decision        P(fake) and "fake"/"real" at `threshold` (null when the image failed)
    threshold               the operating threshold the decision used (the Detector's)
    error                   why the image has no score (null when scored)
    model, package_sha256   which model scored it (see package_ship.package_sha256)
    backend, precision      what ran it
    seconds                 this image's share of the work: read + decode + preprocess, plus
                            its share of the batch's inference call
"""

from __future__ import annotations

from dataclasses import dataclass

from ..prediction import NON_FINITE

COLUMNS = ("path", "size", "sha256", "p_fake", "decision", "threshold", "error",
           "model", "package_sha256", "backend", "precision", "seconds")

# error text (as the runtime words it) -> failure kind in the summary; first match wins
FAILURE_KINDS = (
    ("no such file", "missing"),
    ("is a directory", "not-a-file"),
    ("not a regular file", "not-a-file"),
    ("cannot read", "unreadable"),
    ("empty", "empty"),
    ("not an image", "not-an-image"),
    ("truncated", "truncated"),
    ("decompression-bomb", "too-many-pixels"),
    ("decode-cost bomb", "too-many-scans"),
    ("took longer than", "decode-budget"),
    ("exceeds", "too-large"),
    ("inference failed", "inference"),
    (NON_FINITE, "non-finite"),
    ("budget", "decode-budget"),
    ("timed out", "decode-budget"),
)


def failure_kind(error: str) -> str:
    low = error.lower()
    for needle, kind in FAILURE_KINDS:
        if needle.lower() in low:
            return kind
    return "decode"


def schema():
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("size", pa.int64()), ("sha256", pa.string()),
        ("p_fake", pa.float64()), ("decision", pa.string()), ("threshold", pa.float64()),
        ("error", pa.string()), ("model", pa.string()), ("package_sha256", pa.string()),
        ("backend", pa.string()), ("precision", pa.string()), ("seconds", pa.float64()),
    ])


@dataclass(frozen=True)
class ModelIdentity:
    """The columns every row of one scan shares."""

    model: str
    package_sha256: str
    backend: str
    precision: str
    threshold: float

    @classmethod
    def of(cls, detector, package_sha256: str) -> "ModelIdentity":
        return cls(detector.manifest.name, package_sha256, detector.choice.backend,
                   detector.choice.precision, float(detector.threshold))


def score_prepared(detector, prepared: list, identity: ModelIdentity) -> list[dict]:
    """Score a batch of decode results (decode.Prepared) with the Detector: one row each."""
    import time

    ready = [p for p in prepared if p.error is None]
    t0 = time.perf_counter()
    preds = detector.predict_prepared([p.tensor for p in ready], [p.path for p in ready]) if ready else []
    share = (time.perf_counter() - t0) / max(1, len(ready))
    by_path = {id(p): pred for p, pred in zip(ready, preds)}
    rows = []
    for p in prepared:
        pred = by_path.get(id(p))
        error = p.error if pred is None else pred.error
        ok = error is None
        rows.append({
            "path": p.path, "size": p.size, "sha256": p.sha256,
            "p_fake": pred.score if ok else None,
            "decision": ("fake" if pred.is_fake else "real") if ok else None,
            "threshold": identity.threshold, "error": error,
            "model": identity.model, "package_sha256": identity.package_sha256,
            "backend": identity.backend, "precision": identity.precision,
            "seconds": p.seconds + (share if pred is not None else 0.0),
        })
    return rows


def to_table(rows: list[dict]):
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema())
