"""`fakedet eval --splice`: score spliced images and untouched reals with evidence maps,
write the figures into metrics.json ("splice") and a PNG grid of examples (splice.png)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fakedet.atomic import atomic_write_bytes, atomic_write_text
from fakedet.errors import DataError

from .splice import DEFAULT_PARTIAL_WINDOW, Splice, make_splices, splice_report

GRID_ROWS = 6


def real_images(data: Path) -> list[Path]:
    from fakedet.runtime.imageio import expand_paths

    folder = Path(data) / "0_real"
    if not folder.is_dir():
        raise DataError(f"{data}: --splice needs the data folder's 0_real/ (the photos to splice)")
    return sorted(expand_paths([folder]))


def run_splice(model: Path, data: Path, recon_dir: Path, out: Path, backend: str = "auto", precision: str = "auto",
               threshold: float | None = None, batch: int = 16, set_partial: bool = False,
               partial_window: float = DEFAULT_PARTIAL_WINDOW) -> dict:
    from fakedet.runtime.detector import Detector

    if (Path(model) / "config.json").is_file() and not (Path(model) / "manifest.json").is_file():
        raise DataError(f"{model}: --splice needs a model package (export the checkpoint first)")
    reals = real_images(data)
    splices = make_splices(reals, Path(recon_dir))
    with Detector.open(model, backend=backend, precision=precision, threshold=threshold, batch_size=batch) as det:
        real_preds = det.predict(reals, explain=True)
        splice_preds = det.predict([s.pixels for s in splices], explain=True)
        report = splice_report(real_preds, splice_preds, splices, window=partial_window)
        report["decision_threshold"] = det.threshold
    out.mkdir(parents=True, exist_ok=True)
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metrics["splice"] = report
    atomic_write_text(metrics_file, json.dumps(metrics, indent=2) + "\n")
    atomic_write_bytes(out / "splice.png", example_grid(splices, splice_preds, report["partial_logit"], partial_window))
    if set_partial:
        write_partial_threshold(Path(model), report)
    return report


def write_partial_threshold(model: Path, report: dict) -> None:
    """Record the chosen partial threshold in the package's manifest (its evidence entry)."""
    from fakedet.package import ModelPackage, PackageWriter

    if not model.is_dir():
        raise DataError(f"{model}: --set-partial updates a package directory (unzip it first)")
    with ModelPackage.open(model) as pkg:
        manifest = pkg.manifest.copy()
        ev = manifest.evidence
        if ev is None:
            raise DataError(f"{model}: the package has no exported evidence output; its tile maps use the "
                            "decision threshold (export again to get one)")
        ev.partial_logit, ev.partial_window = report["partial_logit"], report["partial_window"]
        ev.details["partial"] = {k: report[k] for k in ("partial_threshold", "partial_window", "partial_threshold_chosen_on", "false_partial_on_real",
                                                        "partial_caught_of_missed", "pixel_auc")}
        with PackageWriter(model, manifest, base=pkg):
            pass


def _overlay(pixels: np.ndarray, probs: np.ndarray) -> Image.Image:
    alpha = (0.6 * probs)[..., None]
    out = pixels.astype(np.float32) * (1 - alpha) + np.array([230, 30, 30], np.float32) * alpha
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def example_grid(splices: list[Splice], preds, partial_logit: float, window: float = 0.0, rows: int = GRID_ROWS) -> bytes:
    """PNG: per row, the spliced image with the true region outlined, its overlay, and the verdict."""
    from .splice import pixel_probs

    picks = [i for i, p in enumerate(preds) if p.ok and p.evidence is not None]
    picks = [picks[int(k)] for k in np.linspace(0, len(picks) - 1, min(rows, len(picks)))]
    side, pad, text_w = 160, 6, 230
    sheet = Image.new("RGB", (2 * side + text_w + 4 * pad, len(picks) * (side + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for r, i in enumerate(picks):
        s, p = splices[i], preds[i]
        h, w = s.mask.shape
        probs = pixel_probs(p.evidence, h, w)
        left = Image.fromarray(s.pixels).resize((side, side), Image.Resampling.NEAREST)
        ys, xs = np.nonzero(s.mask)
        k = side / max(h, w)
        ImageDraw.Draw(left).rectangle([xs.min() * k, ys.min() * k, (xs.max() + 1) * k - 1, (ys.max() + 1) * k - 1],
                                       outline=(40, 220, 40), width=2)
        y = pad + r * (side + pad)
        sheet.paste(left, (pad, y))
        sheet.paste(_overlay(s.pixels, probs).resize((side, side), Image.Resampling.NEAREST), (2 * pad + side, y))
        verdict = "FAKE" if p.is_fake else ("partial" if p.evidence.window_logit(window) >= partial_logit else "real")
        draw.text((3 * pad + 2 * side, y + 8), f"{s.kind}\nP(fake) {p.score:.3f}\nmax region "
                  f"{p.evidence.max_region():.3f}\n-> {verdict}", fill="black")
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    return buf.getvalue()
