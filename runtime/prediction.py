"""One image's verdict: what `Detector.predict` returns per item."""

from __future__ import annotations

from dataclasses import asdict, dataclass

NON_FINITE = "model produced a non-finite score (NaN or infinity)"


@dataclass
class Prediction:
    source: str
    score: float | None = None  # P(fake)
    logit: float | None = None
    is_fake: bool | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)
