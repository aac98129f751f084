"""The demo's evidence-map stage: `fakedet eval --splice` on the held-out crops (spliced
with their own reconstructions), its localisation figures on the stage's line, and six
overlays in OUT/evidence/ (a real crop, its reconstruction, a generated image, and the
real crop spliced three ways)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fakedet.atomic import atomic_write_bytes

SPLICE_DIR = "eval-splice"


def _figure(out: Path) -> str:
    sp = json.loads((out / SPLICE_DIR / "metrics.json").read_text())["splice"]
    caught = sp["partial_caught_of_missed"]
    return (f"pixel AUC {sp['pixel_auc']:.3f}; whole-image score misses {sp['whole_image_missed']}/"
            f"{sp['images']['spliced']} splices, partial catches {'-' if caught is None else f'{caught:.0%}'} of "
            f"those at {sp['false_partial_on_real']:.1%} false partials on untouched reals")


def _overlays(out: Path, pkg: Path, held: Path, gen: list[Path]) -> list[Path]:
    import io

    from fakedet.runtime.detector import Detector
    from fakedet.runtime.overlay import render
    from fakedet.runtime.preprocess import geometry
    from fakedet.train.splice import splice_mask

    real = sorted((held / "0_real").glob("*.png"))[0]
    recon = held / "reconstructed" / "1_fake" / real.name
    a, b = np.asarray(Image.open(real).convert("RGB")), np.asarray(Image.open(recon).convert("RGB"))
    rng = np.random.default_rng(0)
    items = [("real", a), ("reconstructed", b), ("generated", np.asarray(Image.open(gen[0]).convert("RGB")))]
    for kind in ("left-half", "right-half", "rectangle"):
        m = splice_mask(*a.shape[:2], kind, rng)
        items.append((f"spliced {kind}", np.where(m[..., None], b, a)))
    dest = out / "evidence"
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with Detector.open(pkg, backend="ort-cpu", precision="fp32") as det:
        preds = det.predict([x for _, x in items], explain=True)
        for i, ((label, pixels), p) in enumerate(zip(items, preds)):
            base = geometry(Image.fromarray(pixels), det.manifest.input.preprocess)
            img = render(base, p.evidence).resize((base.shape[1] * 3, base.shape[0] * 3), Image.Resampling.NEAREST)
            verdict = "FAKE" if p.is_fake else ("partial" if p.partial else "real")
            canvas = Image.new("RGB", (img.width, img.height + 18), "white")
            canvas.paste(img, (0, 18))
            ImageDraw.Draw(canvas).text((4, 3), f"{label}: P {p.score:.2f} {verdict}", fill="black")
            buf = io.BytesIO()
            canvas.save(buf, "PNG")
            path = dest / f"{i + 1}-{label.replace(' ', '-')}.png"
            atomic_write_bytes(path, buf.getvalue())
            written.append(path)
    return written


def evidence_stage(r, out: Path, held: Path, pkg: Path, gen: list[Path], figs: dict) -> None:
    """Two demo stages: the splice evaluation (threshold for `partial` written into the
    package) and the six overlays; the figures go to figs["evidence"]."""
    r.command("evidence maps: spliced crops (eval --splice)", [
        "eval", pkg, "--data", held, "--splice", held / "reconstructed" / "1_fake", "--out", out / SPLICE_DIR,
        "--backend", "ort-cpu", "--precision", "fp32", "--quiet", "--set-partial"], ok=(0, 1),
        artifact=out / SPLICE_DIR / "splice.png", figure=lambda _: _figure(out))
    sp = json.loads((out / SPLICE_DIR / "metrics.json").read_text())["splice"]
    figs["evidence"] = {k: sp[k] for k in ("pixel_auc", "mean_pixel_auc_per_image", "whole_image_missed",
                                            "partial_caught_of_missed", "false_partial_on_real", "partial_logit",
                                            "partial_window")}
    figs["evidence"]["images"] = sp["images"]
    r.stage("evidence overlays", lambda: _overlays(out, pkg, held, gen), artifact=out / "evidence",
            figure=lambda v: f"{len(v)} overlays (real, reconstructed, generated, 3 spliced)")
