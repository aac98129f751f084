"""Scoring encoded images for a server: one call per server batch, one row per image,
and a bad image costs its own row only (its error, NaN score), never the batch."""

from __future__ import annotations

import numpy as np


def score_blobs(detector, blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoded images (JPEG, PNG, WebP... bytes) -> (P(fake) float32 [n, 1], NaN where the
    image failed; is_fake bool [n, 1]; error bytes object [n, 1], b"" where it scored)."""
    preds = detector.predict([bytes(b) for b in blobs])
    scores = np.array([[np.nan if p.score is None else p.score] for p in preds], dtype=np.float32).reshape(-1, 1)
    fake = np.array([[bool(p.is_fake)] for p in preds], dtype=bool).reshape(-1, 1)
    errors = np.array([[(p.error or "").encode()] for p in preds], dtype=object).reshape(-1, 1)
    return scores, fake, errors
