"""The manifest's field checks: each names the field and what is wrong with it, and bounds
every number a package may state (a crafted manifest must not make the runtime allocate
without bound). Shared by the input contract (fakedet.inputs) and the manifest."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

from .errors import ManifestError

MAX_NAME = 256


def _kind(v) -> str:
    if isinstance(v, str):
        text = f"'{v}'"
    else:
        text = json.dumps(v) if isinstance(v, (int, float, bool, type(None))) else f"a {type(v).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _object(d, where: str) -> dict:
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {_kind(d)}")
    return d


def _int(v, where: str, key: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ManifestError(f"{where}: {key} must be an integer, got {_kind(v)}")
    if not lo <= v <= hi:
        raise ManifestError(f"{where}: {key} must lie in [{lo}, {hi}], got {v}")
    return v


def _num(v, where: str, key: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ManifestError(f"{where}: {key} must be a finite number, got {_kind(v)}")
    if not lo <= v <= hi:
        raise ManifestError(f"{where}: {key} must lie in [{lo:g}, {hi:g}], got {v:g}")
    return float(v)


def _str(v, where: str, key: str, max_len: int = MAX_NAME) -> str:
    if not isinstance(v, str):
        raise ManifestError(f"{where}: {key} must be a string, got {_kind(v)}")
    if len(v) > max_len:
        raise ManifestError(f"{where}: {key} is {len(v)} characters long (at most {max_len})")
    return v


def _choice(v, where: str, key: str, known) -> str:
    if not isinstance(v, str) or v not in known:
        raise ManifestError(f"{where}: unknown {key} {_kind(v)} (known: {', '.join(known)})")
    return v


def _no_unknown(cls, d: dict, where: str) -> None:
    _object(d, where)
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {sorted(unknown)}")


class _FlatRecord:
    """from_dict / to_dict for a dataclass of plain fields: unknown keys refused, then validate."""

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None):
        where = where or cls.WHERE
        _no_unknown(cls, d, where)
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        return asdict(self)


def _need(d: dict, key: str, where: str):
    if key not in d:
        raise ManifestError(f"{where}: missing required field '{key}'")
    return d[key]
