"""What a verdict says beyond the raw score, as manifest fields (schema 3): the probability
calibration that turns the model's logit into a calibrated P(fake), and the named
operating points (thresholds on that P(fake) measured on held-out data)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .errors import ManifestError
from .manifest_fields import _choice, _int, _need, _no_unknown, _num, _object, _str

CALIBRATION_METHODS = ("temperature", "platt", "isotonic")
MAX_KNOTS = 4096
MAX_POINTS = 64
POINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.%+-]{0,63}$")


def _data(d, where: str) -> dict:
    """The held-out data a fit or a measurement came from: count and the list's sha256."""
    _object(d, where)
    _int(_need(d, "count", where), where, "count", 0, 1 << 40)
    sha = _str(_need(d, "list_sha256", where), where, "list_sha256", 64)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{where}: list_sha256 must be 64 lowercase hex digits")
    return d


@dataclass
class ProbabilityCalibration:
    """temperature: P(fake) = sigmoid(logit / temperature). platt: sigmoid(logit / temperature
    + bias) (temperature scaling with a shift: it also corrects a class prior). isotonic: P(fake) =
    interp(sigmoid(logit), x, y), a non-decreasing piecewise-linear map (clipped at the ends)."""

    method: str
    temperature: float = 1.0
    bias: float = 0.0
    x: list = field(default_factory=list)
    y: list = field(default_factory=list)
    data: dict = field(default_factory=dict)  # count, list_sha256, source
    metrics: dict = field(default_factory=dict)  # ECE before / after, where measured

    def validate(self, where: str = "calibration") -> "ProbabilityCalibration":
        _choice(self.method, where, "method", CALIBRATION_METHODS)
        self.temperature = _num(self.temperature, where, "temperature", 1e-3, 1e3)
        self.bias = _num(self.bias, where, "bias", -100.0, 100.0)
        if not isinstance(self.x, list) or not isinstance(self.y, list) or len(self.x) != len(self.y):
            raise ManifestError(f"{where}: x and y must be lists of the same length")
        if len(self.x) > MAX_KNOTS:
            raise ManifestError(f"{where}: at most {MAX_KNOTS} knots, got {len(self.x)}")
        self.x = [_num(v, where, "x[]", 0.0, 1.0) for v in self.x]
        self.y = [_num(v, where, "y[]", 0.0, 1.0) for v in self.y]
        if self.method == "isotonic":
            if len(self.x) < 1:
                raise ManifestError(f"{where}: an isotonic calibration needs at least one knot")
            if any(b < a for a, b in zip(self.x, self.x[1:])) or any(b < a for a, b in zip(self.y, self.y[1:])):
                raise ManifestError(f"{where}: isotonic knots must be non-decreasing in x and y")
        _data(self.data, f"{where}.data")
        _object(self.metrics, f"{where}.metrics")
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "calibration") -> "ProbabilityCalibration":
        _no_unknown(cls, d, where)
        _need(d, "method", where)
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.method != "isotonic":
            d.pop("x"), d.pop("y")
        if self.method != "platt":
            d.pop("bias")
        return d


@dataclass
class OperatingPoint:
    """A named threshold on P(fake) (the calibrated one where the package has a calibration),
    with the true- and false-positive rates measured at it on `data`."""

    name: str
    threshold: float
    tpr: float
    fpr: float
    rule: str = ""  # how it was chosen, e.g. "lowest threshold with FPR <= 0.01"
    data: dict = field(default_factory=dict)  # count, real, fake, list_sha256, source

    def validate(self, where: str = "operating point") -> "OperatingPoint":
        if not isinstance(self.name, str) or not POINT_NAME.match(self.name):
            raise ManifestError(f"{where}: name must be 1-64 of letters, digits and _.%+- (got {self.name!r:.40})")
        self.threshold = _num(self.threshold, where, "threshold", 0.0, 1.0)
        self.tpr = _num(self.tpr, where, "tpr", 0.0, 1.0)
        self.fpr = _num(self.fpr, where, "fpr", 0.0, 1.0)
        _str(self.rule, where, "rule")
        _data(self.data, f"{where}.data")
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "operating point") -> "OperatingPoint":
        _no_unknown(cls, d, where)
        for key in ("name", "threshold", "tpr", "fpr"):
            _need(d, key, where)
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        return asdict(self)


def operating_points_from(value, where: str) -> list[OperatingPoint]:
    if not isinstance(value, list) or len(value) > MAX_POINTS:
        raise ManifestError(f"{where}: expected a list of at most {MAX_POINTS} operating points")
    points = [OperatingPoint.from_dict(p, f"{where}[{i}]") for i, p in enumerate(value)]
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ManifestError(f"{where}: operating point names repeat ({', '.join(names)})")
    return points
