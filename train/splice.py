"""Spliced images and how well evidence maps find them (`fakedet eval --splice`).

A spliced image is a real photo with one region replaced by the same region of its
reconstruction through the autoencoder (the generated pixels are in place, the rest is
untouched): the left or right half, or a random rectangle of 25-50% of the area.

Figures: pixel-level localisation AUC of the map upsampled to the image (pooled over
every pixel of every spliced image, and the mean per image); how many spliced images
the whole-image score misses; of those, how many `partial` catches, at a partial
threshold chosen on half of the untouched real photos for <= 5% false partials and
measured on the other half (so the figure is not fitted to the images it reports).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakedet.errors import DataError
from fakedet.runtime.imageio import load_image
from fakedet.runtime.metrics import roc_auc
from fakedet.runtime.scoring import sigmoid

SPLICE_KINDS = ("left-half", "right-half", "rectangle")
TARGET_FALSE_PARTIAL = 0.05
# a window of half the map's side (a quarter of the image): the splices here cover 25-50% of it;
# single regions flagged 12.5% of the demo's real crops at the threshold that caught 75% of missed
# splices, quarter windows 5% at 99% (docs/evidence-maps.md)
DEFAULT_PARTIAL_WINDOW = 0.5


@dataclass
class Splice:
    name: str
    kind: str
    pixels: np.ndarray  # uint8 HxWx3
    mask: np.ndarray  # bool HxW: True where the pixels are generated


def splice_mask(h: int, w: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    if kind == "left-half":
        mask[:, : w // 2] = True
    elif kind == "right-half":
        mask[:, w // 2:] = True
    else:  # a rectangle of 25-50% of the area, aspect between 1:2 and 2:1
        area = rng.uniform(0.25, 0.50) * h * w
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        rh = int(min(h, max(1, round(np.sqrt(area / aspect)))))
        rw = int(min(w, max(1, round(area / rh))))
        y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        mask[y:y + rh, x:x + rw] = True
    return mask


def make_splices(reals: list[Path], recon_dir: Path, seed: int = 0) -> list[Splice]:
    """Two splices per real photo with a same-named reconstruction: a half (left or right,
    alternating) and a random rectangle."""
    rng = np.random.default_rng(seed)
    out = []
    for i, path in enumerate(reals):
        recon = recon_dir / path.name
        if not recon.is_file():
            continue
        real = np.asarray(load_image(path))
        fake = np.asarray(load_image(recon))
        if fake.shape != real.shape:
            raise DataError(f"{recon}: {fake.shape[1]}x{fake.shape[0]}, but {path.name} is "
                            f"{real.shape[1]}x{real.shape[0]}: a reconstruction has the size of its photo")
        for kind in (SPLICE_KINDS[i % 2], "rectangle"):
            mask = splice_mask(real.shape[0], real.shape[1], kind, rng)
            out.append(Splice(f"{path.stem}-{kind}", kind, np.where(mask[..., None], fake, real), mask))
    if not out:
        raise DataError(f"{recon_dir}: no reconstruction named like the real images (e.g. {reals[0].name})"
                        if reals else "no real images to splice")
    return out


def pixel_probs(ev, h: int, w: int) -> np.ndarray:
    """The map's P(fake) per pixel of an h x w image (a map over a padded input is cropped)."""
    if ev.covers == "input":
        full = ev.upsampled()
        return full[:h, :w]
    return ev.upsampled(w, h)


def false_partial_threshold(real_max: np.ndarray, real_fake: np.ndarray, target: float) -> float:
    """The lowest partial threshold at which at most `target` of these real images (the
    ones the whole-image score passes) would be flagged partial."""
    candidates = np.sort(real_max[~real_fake])
    if not len(candidates):
        return 1.0
    allowed = int(np.floor(target * len(real_max)))  # false partials allowed over all reals
    if allowed >= len(candidates):
        return float(candidates[0])
    return float(np.nextafter(candidates[len(candidates) - 1 - allowed], np.inf))


def splice_report(real_preds, splice_preds, splices: list[Splice], target: float = TARGET_FALSE_PARTIAL,
                  window: float = DEFAULT_PARTIAL_WINDOW) -> dict:
    """The figures above from the detector's explained predictions on untouched real photos
    and on the spliced images (same order as `splices`); `partial` compares the highest mean
    region logit over windows of `window` of the map's side (runtime.evidence.window_means)."""
    ok = [(p, s) for p, s in zip(splice_preds, splices) if p.ok and p.evidence is not None]
    reals = [p for p in real_preds if p.ok and p.evidence is not None]
    if not ok or len(reals) < 2:
        raise DataError("too few images scored for the splice figures")
    labels, scores, per_image = [], [], []
    for p, s in ok:
        probs = pixel_probs(p.evidence, *s.mask.shape)
        labels.append(s.mask.reshape(-1))
        scores.append(probs.reshape(-1))
        per_image.append(roc_auc(s.mask.reshape(-1), probs.reshape(-1)))
    pooled = roc_auc(np.concatenate(labels), np.concatenate(scores))
    real_max = np.array([p.evidence.window_logit(window) for p in reals])  # logits: probabilities saturate at 1
    real_fake = np.array([bool(p.is_fake) for p in reals])
    fit, test = np.arange(len(reals)) % 2 == 0, np.arange(len(reals)) % 2 == 1
    threshold = false_partial_threshold(real_max[fit], real_fake[fit], target)
    false_partial = float(np.mean(~real_fake[test] & (real_max[test] >= threshold)))
    sp_fake = np.array([bool(p.is_fake) for p, _ in ok])
    sp_max = np.array([p.evidence.window_logit(window) for p, _ in ok])
    missed = ~sp_fake
    caught = missed & (sp_max >= threshold)
    by_kind = {}
    for kind in SPLICE_KINDS:
        sel = np.array([s.kind == kind for _, s in ok])
        if sel.any():
            by_kind[kind] = {"images": int(sel.sum()), "whole_image_missed": int((missed & sel).sum()),
                             "partial_caught": int((caught & sel).sum()),
                             "mean_pixel_auc": float(np.nanmean(np.array(per_image)[sel]))}
    return {
        "images": {"spliced": len(ok), "untouched_real": len(reals)},
        "source": ok[0][0].evidence.source,
        "pixel_auc": float(pooled),
        "mean_pixel_auc_per_image": float(np.nanmean(per_image)),
        "whole_image_missed": int(missed.sum()),
        "whole_image_missed_share": float(missed.mean()),
        "partial_logit": threshold,
        "partial_window": window,
        "partial_threshold": float(sigmoid(np.array([threshold]))[0]),
        "partial_threshold_chosen_on": f"{int(fit.sum())} untouched real images (even positions), "
                                       f"at most {target:.0%} false partials",
        "partial_caught_of_missed": float(caught.sum() / missed.sum()) if missed.any() else None,
        "caught_by_score_or_partial": float(np.mean(sp_fake | (sp_max >= threshold))),
        "false_partial_on_real": false_partial,
        "false_partial_measured_on": f"{int(test.sum())} untouched real images (odd positions)",
        "by_kind": by_kind,
    }
