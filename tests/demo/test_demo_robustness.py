"""The demo's robustness table, read back from `fakedet eval --sweep`'s per-condition scores."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fakedet.demo import robustness


def _write_eval(d, conditions, rng):
    """An eval folder as `fakedet eval --sweep` writes it: metrics.json naming each condition's scores file."""
    d.mkdir()
    rows_by_cond = {}
    for cond in ["clean", *conditions]:
        rows = []
        for photo in ("cat", "dog"):
            rows += [(f"x/0_real/{photo}__{i:03d}.png", 0, "", rng.uniform(0, 0.7)) for i in range(12)]
            rows += [(f"x/reconstructed/1_fake/{photo}__{i:03d}.png", 1, "reconstructed", rng.uniform(0.2, 1))
                     for i in range(12)]
            rows += [(f"x/generated/1_fake/{photo}__mix-{i:03d}.png", 1, "generated", rng.uniform(0.1, 1))
                     for i in range(6)]
        name = "scores.csv" if cond == "clean" else f"scores-{cond.replace(':', '-')}.csv"
        with open(d / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "generator", "score"])
            w.writerows(rows)
        rows_by_cond[cond] = rows
    rob = [{"condition": c, "scores": f"scores-{c.replace(':', '-')}.csv"} for c in conditions]
    (d / "metrics.json").write_text(json.dumps({"robustness": rob}))
    return rows_by_cond


def test_tables_headline_and_misses_match_sklearn(tmp_path):
    rows = _write_eval(tmp_path / "e", list(robustness.CONDITIONS), np.random.default_rng(0))
    t = robustness.tables(tmp_path / "e")
    assert list(t) == list(robustness.CONDITIONS)
    for cond in ("jpeg:75", "downscale:0.5"):
        dog = [r for r in rows[cond] if "dog__" in r[0] and r[2] in ("", "reconstructed")]
        assert t[cond]["reconstructed"]["dog"] == pytest.approx(roc_auc_score([r[1] for r in dog], [r[3] for r in dog]))
        every = rows[cond]
        assert t[cond]["all fakes"]["all"] == pytest.approx(roc_auc_score([r[1] for r in every], [r[3] for r in every]))
    clean = {"reconstructed": {"all": 0.97}, "generated": {"all": 0.8}}
    head = robustness.headline(clean, t)
    assert head["jpeg:75"] == t["jpeg:75"]["all fakes"]["all"] and head["reconstructed"] == 0.97
    missed = robustness.misses(head)
    assert "generated" in missed and "reconstructed" not in missed
    assert robustness.misses({**head, "jpeg:75": None})["jpeg:75"] is None  # a missing figure is a miss


def test_printed_table_has_a_row_per_condition_and_precision(tmp_path):
    _write_eval(tmp_path / "e", ["jpeg:75", "downscale:0.5"], np.random.default_rng(1))
    t = robustness.tables(tmp_path / "e")
    clean = {"fp32": {"reconstructed": {"all": 0.9712}}, "int8": {"reconstructed": {"all": 0.9655}}}
    lines = []
    robustness.print_table(lines.append, {"fp32": t, "int8": t}, clean)
    rows = [ln.split() for ln in lines if ln.startswith("  ") and not ln.startswith("  condition")]
    assert [r[:2] for r in rows] == [["clean", "fp32"], ["clean", "int8"], ["jpeg:75", "fp32"], ["jpeg:75", "int8"],
                                     ["downscale:0.5", "fp32"], ["downscale:0.5", "int8"]]
    assert rows[0][2] == "0.9712" and rows[1][2] == "0.9655"
    assert rows[2][2] == f"{t['jpeg:75']['reconstructed']['all']:.4f}"
