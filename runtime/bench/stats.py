"""Statistics for the benchmark: percentiles, medians and spreads, with their
definitions stated (tests hold them against numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks
    (numpy's default, "linear": position (n - 1) * q / 100 in the sorted sample)."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside [0, 100]")
    return float(np.percentile(xs, q))


def median(values) -> float:
    return percentile(values, 50.0)


def mean(values) -> float:
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean of an empty sample")
    return sum(xs) / len(xs)


@dataclass
class Spread:
    """A value measured in several repeats: their median and how far they spread."""

    median: float
    iqr: float  # p75 - p25 of the repeat values
    min: float
    max: float
    repeats: list

    @classmethod
    def of(cls, values) -> "Spread":
        xs = [float(v) for v in values]
        return cls(median(xs), percentile(xs, 75) - percentile(xs, 25), min(xs), max(xs), xs)

    def to_dict(self) -> dict:
        return {"median": self.median, "iqr": self.iqr, "min": self.min, "max": self.max, "repeats": self.repeats}


def latency_summary(latencies_ms) -> dict:
    """p50/p90/p99/max/mean of per-iteration latencies (milliseconds)."""
    xs = list(latencies_ms)
    return {
        "p50": percentile(xs, 50),
        "p90": percentile(xs, 90),
        "p99": percentile(xs, 99),
        "max": max(xs),
        "mean": mean(xs),
        "count": len(xs),
    }


def median_or_none(values) -> float | None:
    """Median of the non-None values, or None when a stage was never measured."""
    xs = [v for v in values if v is not None]
    return median(xs) if xs else None
