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
