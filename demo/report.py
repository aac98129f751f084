"""Figures the demo reads back from the stages' outputs: PSNR of reconstructions, AUC per
photo and per kind of fake, bench rows."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from fakedet.runtime.metrics import roc_auc

from .data import photo_of


def psnr_pairs(reals: list[Path], fakes_dir: Path) -> float:
    """Mean PSNR (dB) of each real crop against its reconstruction `fakes_dir/STEM.png`."""
    vals = []
    for r in reals:
        a = np.asarray(Image.open(r).convert("RGB"), dtype=np.float64)
        b = np.asarray(Image.open(fakes_dir / f"{r.stem}.png").convert("RGB"), dtype=np.float64)
        mse = max(float(np.mean((a - b) ** 2)), 1e-10)
        vals.append(10 * np.log10(255.0**2 / mse))
    return float(np.mean(vals))


def read_scores(path: Path) -> list[tuple[str, int, str, float]]:
    """(photo, label, generator, P(fake)) per scored image of an eval's scores.csv."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["score"]:
                rows.append((photo_of(r["path"]), int(r["label"]), r["generator"], float(r["score"])))
    return rows


def auc_table(rows) -> dict:
    """{kind: {"all": auc, photo: auc}} for each fake kind (generator folder) against the
    reals; a photo's AUC compares its real crops with the fakes made from it."""
    reals = [(p, s) for p, lab, _, s in rows if lab == 0]
    kinds = defaultdict(list)
    for p, lab, gen, s in rows:
        if lab == 1:
            kinds[gen or "fake"].append((p, s))
    kinds["all fakes"] = [x for v in list(kinds.values()) for x in v]
    out = {}
    for kind, fakes in kinds.items():
        def auc(rs, fs):
            y = np.r_[np.zeros(len(rs)), np.ones(len(fs))]
            return roc_auc(y, np.r_[rs, fs]) if rs and fs else None

        table = {"all": auc([s for _, s in reals], [s for _, s in fakes])}
        for photo in sorted({p for p, _ in reals}):
            table[photo] = auc([s for p, s in reals if p == photo], [s for p, s in fakes if p == photo])
        out[kind] = table
    return out


def bench_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f)]


FLAT_DIFF = 1.0  # mean |difference| of horizontal neighbours, grey levels: an out-of-focus crop


def flat_share(paths: list[Path]) -> float:
    """Share of crops whose mean absolute horizontal neighbour difference (grey) is under FLAT_DIFF."""
    if not paths:
        return 0.0
    flat = 0
    for path in paths:
        grey = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
        flat += float(np.abs(np.diff(grey, axis=1)).mean()) < FLAT_DIFF
    return flat / len(paths)


def below_target(table: dict, targets: dict, reals: dict[str, list[Path]]) -> list[dict]:
    """Photos whose AUC for some kind of fake is under that kind's target, with the share of
    their real crops that are flat (the known cause: little fine detail for the decoder to change)."""
    out = []
    for photo, paths in sorted(reals.items()):
        misses = {kind: table[kind][photo] for kind, goal in targets.items()
                  if table.get(kind, {}).get(photo) is not None and table[kind][photo] < goal}
        if misses:
            out.append({"photo": photo, "auc": {k: round(v, 3) for k, v in misses.items()},
                        "flat_share": round(flat_share(paths), 3)})
    return out
