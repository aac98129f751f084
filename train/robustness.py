"""Image perturbations for robustness sweeps, applied to the decoded RGB image before the
model's own preprocessing (so they model what happens to an image before it reaches us).

A condition is `family:value`: `downscale:0.5` (both sides x0.5, Pillow's antialiased
bicubic; the model then sees the smaller image), `jpeg:75` and `webp:75` (re-encode at
that quality), `blur:2` (Gaussian blur, sigma 2 px). `clean` is the image as decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PIL import Image, ImageFilter

from fakedet.errors import DataError

from .augment import _encode

DEFAULT_SWEEP = (
    "downscale:0.75", "downscale:0.5", "downscale:0.25",
    "jpeg:95", "jpeg:75", "jpeg:50", "jpeg:30",
    "webp:95", "webp:75", "webp:50",
    "blur:1", "blur:2", "blur:3",
)


def _downscale(img: Image.Image, factor: float) -> Image.Image:
    if not 0 < factor <= 1:
        raise DataError(f"downscale factor must be in (0, 1], got {factor}")
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return img if size == img.size else img.resize(size, Image.Resampling.BICUBIC)


def _reencode(fmt: str) -> Callable[[Image.Image, float], Image.Image]:
    def apply(img: Image.Image, quality: float) -> Image.Image:
        if not 1 <= quality <= 100:
            raise DataError(f"{fmt.lower()} quality must be in [1, 100], got {quality}")
        return _encode(img, fmt, int(quality))

    return apply


def _blur(img: Image.Image, sigma: float) -> Image.Image:
    if sigma < 0:
        raise DataError(f"blur sigma must be >= 0, got {sigma}")
    return img if sigma == 0 else img.filter(ImageFilter.GaussianBlur(radius=sigma))


FAMILIES: dict[str, Callable[[Image.Image, float], Image.Image]] = {
    "downscale": _downscale,
    "jpeg": _reencode("JPEG"),
    "webp": _reencode("WEBP"),
    "blur": _blur,
}


@dataclass(frozen=True)
class Condition:
    family: str  # "clean" or a FAMILIES key
    value: float | None = None

    @property
    def name(self) -> str:
        return "clean" if self.family == "clean" else f"{self.family}:{self.value:g}"

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if self.family == "clean" else FAMILIES[self.family](img, self.value)


CLEAN = Condition("clean")


def parse_conditions(text: str | list[str] | tuple[str, ...]) -> list[Condition]:
    """'jpeg:75,50 blur:1' or ['jpeg:75', ...] -> conditions (validated before any work)."""
    items = text.replace(";", " ").split() if isinstance(text, str) else list(text)
    out = []
    for item in items:
        fam, _, vals = item.partition(":")
        fam = fam.strip().lower()
        if fam == "clean":
            out.append(CLEAN)
            continue
        if fam not in FAMILIES or not vals:
            raise DataError(f"robustness condition '{item}': expected FAMILY:VALUE[,VALUE] with FAMILY one of "
                            f"{', '.join(FAMILIES)}")
        for v in vals.split(","):
            try:
                cond = Condition(fam, float(v))
            except ValueError:
                raise DataError(f"robustness condition '{item}': '{v}' is not a number") from None
            cond(Image.new("RGB", (4, 4)))  # range check now, not halfway through a sweep
            out.append(cond)
    return out
