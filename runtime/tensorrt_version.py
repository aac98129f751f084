"""TensorRT versions: the one parser, the version facts fakedet's rules depend on, the
number TensorRT writes in calibration-cache headers, and whether a plan built with one
version runs with another. Pure: nothing here imports tensorrt.

NVIDIA's version rules (TensorRT developer guide, "Version Compatibility"; support matrix
11.4, "Engine Portability"):
- By default a plan runs only with the exact TensorRT version that built it.
- A plan built with the version-compatible flag (builder TensorRT >= 8.6) also runs on
  *newer* runtimes of the same major version, never on older ones. Across majors only
  two pairs are supported: TensorRT 8 -> 10 and 10 -> 11 (the 10.x guide also names
  8 -> 9). Such plans embed a lean runtime, so the runtime must allow engine host code.
- Implicit INT8 (calibrators, calibration caches) is deprecated from 10.1 and removed in
  11.0, together with the FP16/INT8 builder flags (deprecated from 10.12): 11 builds
  strongly typed networks only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fakedet.errors import FakedetError

MIN_SUPPORTED = (8, 5)  # fakedet builds with TensorRT 8.5 (JetPack 5) or newer
# Majors a version-compatible plan may cross (builder major -> runtime major).
CROSS_MAJOR_OK = {(8, 9), (8, 10), (10, 11)}

_VERSION = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?")
_CACHE_HEADER = re.compile(r"^TRT-(\d+)-")


class TensorRTVersionError(FakedetError, ValueError):
    """A TensorRT version that cannot be read."""


def parse_version(text: str) -> tuple[int, int, int]:
    """'10.3.0.26' -> (10, 3, 0); '10.0.0b6' -> (10, 0, 0). Missing parts count as 0.
    The one parser of TensorRT versions: the build stamps plans with it and the runtime
    compares with it, so a pre-release tag cannot make a plan refuse its own builder."""
    m = _VERSION.match(str(text))
    if not m:
        raise TensorRTVersionError(f"cannot read a TensorRT version from '{text}'")
    return tuple(int(g) if g is not None else 0 for g in m.groups())  # type: ignore[return-value]


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int = 0
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> "TrtVersion":
        return cls(*parse_version(text))

    @classmethod
    def from_cache_tag(cls, n: int) -> "TrtVersion":
        """TensorRT's own numbering: major*1000+minor*100+patch before 10, major*10000+minor*100+patch from 10."""
        if n >= 10000:
            return cls(n // 10000, (n // 100) % 100, n % 100)
        return cls(n // 1000, (n // 100) % 10, n % 100)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def cache_tag(self) -> int:
        """The number TensorRT writes in calibration cache headers: 8.6.1 -> 8601, 10.3.0 -> 100300."""
        if self.major >= 10:
            return self.major * 10000 + self.minor * 100 + self.patch
        return self.major * 1000 + self.minor * 100 + self.patch

    @property
    def supported(self) -> bool:
        return (self.major, self.minor) >= MIN_SUPPORTED

    @property
    def strongly_typed_only(self) -> bool:
        return self.major >= 11

    @property
    def implicit_int8_deprecated(self) -> bool:
        return (self.major, self.minor) >= (10, 1)

    @property
    def precision_flags_deprecated(self) -> bool:
        """BuilderFlag.FP16/INT8 are deprecated from 10.12 (superseded by strong typing)."""
        return (self.major, self.minor) >= (10, 12)


def cache_tag_number(value: str | int) -> int:
    """'10.3' / '10.3.0' -> 100300, '8.6.1' -> 8601; a tag already ('100300', 8601) is kept."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if re.fullmatch(r"\d{4,6}", text):
        return int(text)
    if not re.fullmatch(r"\d+\.\d+(\.\d+)*", text):
        raise TensorRTVersionError(f"TensorRT version '{text}' is neither like 10.3.0 nor like 100300")
    return TrtVersion.parse(text).cache_tag


# The releases that exist (major -> last minor), from NVIDIA's release notes; fakedet supports
# 8.5 and newer. A version outside them is a typo or a release newer than this table.
LAST_MINOR = {8: 6, 9: 3, 10: 16, 11: 4}


def known_releases() -> str:
    first = {8: MIN_SUPPORTED[1]}
    return ", ".join(f"{m}.{first.get(m, 0)}-{m}.{last}" for m, last in LAST_MINOR.items())


def known_cache_tag_number(value: str | int) -> int:
    """cache_tag_number, refusing a version that is no TensorRT release fakedet supports."""
    tag = cache_tag_number(value)
    v = TrtVersion.from_cache_tag(tag)
    if not v.supported or v.minor > LAST_MINOR.get(v.major, -1):
        raise TensorRTVersionError(f"TensorRT {v.major}.{v.minor} is not a TensorRT release fakedet supports "
                                   f"(known: {known_releases()})")
    return tag


def cache_header_version(first_line: str) -> TrtVersion | None:
    """`TRT-8601-EntropyCalibration2` -> 8.6.1; `TRT-100300-...` -> 10.3.0; None if unreadable."""
    m = _CACHE_HEADER.match(first_line.strip())
    return TrtVersion.from_cache_tag(int(m.group(1))) if m else None


def _v(t: tuple[int, int, int]) -> str:
    return ".".join(map(str, t))


def version_rule(plan_version: str, runtime_version: str, version_compatible: bool) -> tuple[bool, str]:
    """Whether a plan built with `plan_version` runs with `runtime_version`, and why."""
    built, here = parse_version(plan_version), parse_version(runtime_version)
    if built == here:
        return True, f"same TensorRT version ({_v(here)})"
    if not version_compatible:
        return False, (
            f"built with TensorRT {_v(built)}, this runtime is {_v(here)}; a plan runs only with the exact "
            f"TensorRT version that built it unless it was built version-compatible"
        )
    if built < (8, 6, 0):
        return False, f"built with TensorRT {_v(built)}; version compatibility needs a builder >= 8.6"
    if here < built:
        return False, (
            f"version-compatible plan built with TensorRT {_v(built)} cannot run on the older runtime {_v(here)} "
            f"(compatibility only reaches newer runtimes)"
        )
    if built[0] == here[0] or (built[0], here[0]) in CROSS_MAJOR_OK:
        return True, f"version-compatible plan from TensorRT {_v(built)} runs on the newer runtime {_v(here)}"
    return False, (
        f"version-compatible plan built with TensorRT {built[0]}.x cannot run on TensorRT {here[0]}.x "
        f"(NVIDIA supports only the same major, 8->10 and 10->11)"
    )
