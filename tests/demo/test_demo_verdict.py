"""The demo's verdict stage splits its held-out set into two disjoint halves, each holding
every photo and every kind of image."""

import csv

from PIL import Image

from fakedet.demo.verdict import split_heldout


def test_heldout_halves_are_disjoint_and_cover_every_photo_and_kind(tmp_path):
    held = tmp_path / "heldout"
    for folder in ("0_real", "reconstructed/1_fake", "generated/1_fake"):
        (held / folder).mkdir(parents=True)
        for photo in ("cat", "rocket"):
            for i in range(5):
                Image.new("RGB", (8, 8)).save(held / folder / f"{photo}__{i:03d}.png")
    halves = [list(csv.DictReader(open(p))) for p in split_heldout(held, tmp_path)]
    names = [{r["path"] for r in h} for h in halves]
    assert not names[0] & names[1] and len(names[0] | names[1]) == 30
    for h in halves:
        kinds = {(r["generator"], r["label"], r["path"].rsplit("/", 1)[1].split("__")[0]) for r in h}
        assert kinds == {(g, lab, p) for g, lab in (("", "0"), ("reconstructed", "1"), ("generated", "1"))
                         for p in ("cat", "rocket")}
    # a reconstruction sits in the half of its real crop
    real0 = {r["path"].rsplit("/", 1)[1] for r in halves[0] if r["label"] == "0"}
    rec0 = {r["path"].rsplit("/", 1)[1] for r in halves[0] if r["generator"] == "reconstructed"}
    assert real0 == rec0


def test_stage_figure_names_the_method_and_its_parameters(tmp_path):
    import json

    from fakedet.demo.verdict import _figure

    held = {"ece_before": 0.0753, "ece_after": 0.0129, "auc_before": 0.96418, "auc_after": 0.96418}
    points = [{"name": "fpr-5%", "tpr": 0.761, "fpr": 0.05}]
    for cal, how in (({"method": "isotonic", "temperature": 1.0, "x": [0, 0.5, 1], "y": [0, 0.4, 1]}, "isotonic 3 knots"),
                     ({"method": "platt", "temperature": 1.91, "bias": 0.479}, "platt T 1.91, bias +0.479")):
        rep = tmp_path / f"{cal['method']}.json"
        rep.write_text(json.dumps({"held_out": held, "operating_points": points, "calibration": cal}))
        assert _figure(rep) == f"{how}: ECE 0.075 -> 0.013, AUC 0.9642 -> 0.9642; fpr-5% TPR 0.761 at FPR 0.050"
