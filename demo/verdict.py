"""The demo's verdict stage: a probability calibration fitted on one half of the held-out
crops and the operating points measured on the other half (`fakedet eval --fit-calibration`),
written into the demo's package, so its predictions are calibrated P(fake)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fakedet.runtime.dataset_index import index_dataset

from .data import photo_of
from .stages import Runner

# Isotonic: a temperature keeps P = 0.5 at logit 0 (the detector trains on balanced pairs, the
# held-out set holds two fakes per real crop), and Platt's single S-shape only took ECE from 0.075
# to 0.061 on the finished demo; the strictly increasing isotonic map takes it to 0.013, AUC kept.
METHOD = "isotonic"


def split_heldout(held: Path, out: Path) -> tuple[Path, Path]:
    """Two disjoint CSV lists of the held-out set: crops alternate between them within each
    photo and kind (a reconstruction goes where its real crop goes), so both halves hold
    every photo and every kind of fake."""
    halves: list[list] = [[], []]
    seen: dict[tuple, int] = {}
    for s in sorted(index_dataset(held), key=lambda s: (s.generator, s.label, s.path.name)):
        key = (s.generator, s.label, photo_of(s.path))
        k = seen.get(key, 0)
        seen[key] = k + 1
        halves[k % 2].append((s.path.resolve().as_posix(), s.label, s.generator))
    paths = (out / "verdict-calibration.csv", out / "verdict-thresholds.csv")
    for path, rows in zip(paths, halves):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "generator"])
            w.writerows(rows)
    return paths


def _figure(report: Path) -> str:
    rep = json.loads(report.read_text())
    h = rep["held_out"]
    pts = ", ".join(f"{p['name']} TPR {p['tpr']:.3f} at FPR {p['fpr']:.3f}" for p in rep["operating_points"])
    cal = rep["calibration"]
    how = (f"{len(cal['x'])} knots" if cal["method"] == "isotonic" else
           f"T {cal['temperature']:.3g}" + (f", bias {cal['bias']:+.3g}" if "bias" in cal else ""))
    return (f"{cal['method']} {how}: ECE {h['ece_before']:.3f} -> {h['ece_after']:.3f}, "
            f"AUC {h['auc_before']:.4f} -> {h['auc_after']:.4f}; {pts}")


def verdict_stage(r: Runner, out: Path, pkg: Path, held: Path) -> None:
    """Fit, measure and write the verdict fields (one stage of the demo)."""
    calibration, thresholds = split_heldout(held, out)
    r.command("calibrate P(fake), operating points", [
        "eval", pkg, "--data", thresholds, "--fit-calibration", calibration, "--out", out / "eval-verdict",
        "--backend", "ort-cpu", "--precision", "fp32", "--quiet", "--calibration-method", METHOD],
        artifact=out / "eval-verdict" / "calibration.png", figure=lambda _: _figure(out / "eval-verdict" / "calibration.json"))
