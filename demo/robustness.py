"""The demo's robustness table: held-out AUC after what platforms do to an upload (re-encode,
resize, blur), for the FP32 and INT8 packages. The perturbations are `fakedet eval --sweep`'s
(train/robustness.py); the demo's eval stages run the sweep and this reads its per-condition
scores back per photo and per kind of fake."""

from __future__ import annotations

import json
from pathlib import Path

from .report import auc_table, read_scores

CONDITIONS = ("jpeg:75", "webp:90", "downscale:0.75", "downscale:0.5", "blur:1")
# held-out AUC over all four photos the demo aims at, FP32 and INT8 (issue: the headline targets)
TARGETS = {"reconstructed": 0.95, "generated": 0.90, "jpeg:75": 0.95, "downscale:0.5": 0.85}


def sweep_option() -> list[str]:
    return ["--sweep", " ".join(CONDITIONS)]


def tables(eval_dir: Path) -> dict:
    """{condition: {kind: {"all": auc, photo: auc}}} from one eval folder's sweep."""
    rep = json.loads((eval_dir / "metrics.json").read_text())
    return {row["condition"]: auc_table(read_scores(eval_dir / row["scores"])) for row in rep.get("robustness", [])}


def headline(clean: dict, robust: dict) -> dict:
    """The targeted figures of one precision: clean reconstructions and generated, and all
    fakes under JPEG 75 and downscale 0.5 (all four photos together)."""
    out = {kind: clean.get(kind, {}).get("all") for kind in ("reconstructed", "generated")}
    for cond in ("jpeg:75", "downscale:0.5"):
        out[cond] = robust.get(cond, {}).get("all fakes", {}).get("all")
    return out


def misses(figures: dict) -> dict:
    """{figure: value} of the headline figures below their target (or missing)."""
    return {k: v for k, v in figures.items() if v is None or v < TARGETS[k]}


def print_table(say, robust: dict[str, dict], clean: dict[str, dict]) -> None:
    """One row per condition and precision: AUC of reconstructions, generated and all fakes."""
    kinds = ("reconstructed", "generated", "all fakes")
    say("")
    say("robustness: held-out AUC after each perturbation (all four photos; per photo in summary.json)")
    say(f"  {'condition':<15} {'model':<6} " + " ".join(f"{k:>13}" for k in kinds))
    conds = ["clean"] + [c for c in CONDITIONS if any(c in t for t in robust.values())]
    for cond in conds:
        for prec, table in robust.items():
            t = clean[prec] if cond == "clean" else table.get(cond, {})
            cells = " ".join(f"{_fmt(t.get(k, {}).get('all')):>13}" for k in kinds)
            say(f"  {cond:<15} {prec:<6} {cells}")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"
