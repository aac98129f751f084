"""One image's verdict: what `Detector.predict` returns per item."""

from __future__ import annotations

from dataclasses import asdict, dataclass

NON_FINITE = "model produced a non-finite score (NaN or infinity)"


@dataclass
class Prediction:
    source: str
    score: float | None = None  # P(fake), calibrated where the package has a calibration
    logit: float | None = None  # the model's raw logit
    is_fake: bool | None = None
    error: str | None = None
    operating_point: str | None = None  # the named point whose threshold decided is_fake
    provenance: dict | None = None  # declared origin (C2PA, XMP, EXIF), beside the score; predict(provenance=True)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)
