"""Spliced images and the splice figures of `fakedet eval --splice`."""

import json

import numpy as np
import pytest
from PIL import Image

from fakedet.runtime.detector import Prediction
from fakedet.runtime.evidence import EvidenceMap
from fakedet.runtime.metrics import roc_auc
from fakedet.train.splice import false_partial_threshold, make_splices, splice_mask, splice_report



@pytest.mark.parametrize("seed", range(20))
def test_rectangles_cover_a_quarter_to_a_half(seed):
    m = splice_mask(60, 90, "rectangle", np.random.default_rng(seed))
    ys, xs = np.nonzero(m)
    assert 0.24 <= m.mean() <= 0.51 and m.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)  # one solid rectangle


def test_halves():
    rng = np.random.default_rng(0)
    assert splice_mask(4, 6, "left-half", rng)[:, :3].all() and not splice_mask(4, 6, "left-half", rng)[:, 3:].any()
    assert splice_mask(4, 6, "right-half", rng)[:, 3:].all()


def test_make_splices_takes_the_reconstructions_pixels_inside_the_mask(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "recon").mkdir()
    for i in range(2):
        Image.fromarray(np.full((20, 30, 3), 10, np.uint8)).save(tmp_path / "real" / f"a{i}.png")
        Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "recon" / f"a{i}.png")
    sp = make_splices(sorted((tmp_path / "real").glob("*.png")), tmp_path / "recon")
    assert [s.kind for s in sp] == ["left-half", "rectangle", "right-half", "rectangle"]
    for s in sp:
        assert (s.pixels[s.mask] == 200).all() and (s.pixels[~s.mask] == 10).all()


def _brute_threshold(mx, fake, target):
    allowed = int(np.floor(target * len(mx)))
    for t in sorted(set(mx.tolist()) | {1.0}):
        if np.sum(~fake & (mx >= t)) <= allowed:
            return t
    return 1.0


@pytest.mark.parametrize("seed", range(5))
def test_partial_threshold_allows_at_most_the_target_share(seed):
    rng = np.random.default_rng(seed)
    mx, fake = rng.uniform(size=60), rng.uniform(size=60) < 0.2
    t = false_partial_threshold(mx, fake, 0.05)
    assert np.sum(~fake & (mx >= t)) <= 3
    brute = _brute_threshold(mx, fake, 0.05)
    assert np.sum(~fake & (mx >= t)) == np.sum(~fake & (mx >= brute))  # no lower threshold would do


def _pred(logits, score):
    ev = EvidenceMap(np.asarray(logits, np.float32), "exported", "input", (4, 4), 0.5)
    return Prediction("x", score=score, logit=0.0, is_fake=score >= 0.5, evidence=ev)


def test_splice_report_against_a_direct_computation():
    from fakedet.train.splice import Splice

    left = np.zeros((4, 4), bool)
    left[:, :2] = True
    good = [[3.0, -3.0], [3.0, -3.0]]  # the map finds the left half
    splices = [Splice("a", "left-half", np.zeros((4, 4, 3), np.uint8), left)] * 2
    preds = [_pred(good, 0.3), _pred(good, 0.9)]
    reals = [_pred([[-3.0, -2.0], [-3.0, -3.0]], 0.1) for _ in range(40)]
    rep = splice_report(reals, preds, splices)
    assert rep["pixel_auc"] == pytest.approx(roc_auc(np.concatenate([left.ravel()] * 2),
                                                     np.concatenate([preds[0].evidence.upsampled().ravel()] * 2)))
    assert rep["pixel_auc"] > 0.9 and rep["whole_image_missed"] == 1
    assert rep["partial_caught_of_missed"] == 1.0 and rep["false_partial_on_real"] == 0.0


def test_eval_splice_writes_figures_and_grid(tmp_path, evidence_packages):
    import shutil

    from fakedet.cli import main

    pkg = shutil.copytree(evidence_packages[0], tmp_path / "tiny.fdet")
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for folder, blur in (("0_real", False), ("recon/1_fake", True)):
        (data / folder).mkdir(parents=True)
    for i in range(6):
        img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(img).save(data / "0_real" / f"p{i}.png")
        Image.fromarray((img // 4 + 100).astype(np.uint8)).save(data / "recon" / "1_fake" / f"p{i}.png")
    out = tmp_path / "ev"
    rc = main(["eval", str(pkg), "--data", str(data), "--splice", str(data / "recon" / "1_fake"), "--out", str(out),
               "--backend", "ort-cpu", "--quiet", "--set-partial"])
    assert rc == 0
    sp = json.loads((out / "metrics.json").read_text())["splice"]
    assert sp["images"] == {"spliced": 12, "untouched_real": 6} and 0.0 <= sp["pixel_auc"] <= 1.0
    assert (out / "splice.png").stat().st_size > 1000
    from fakedet.package import ModelPackage

    with ModelPackage.open(pkg) as p:
        assert p.manifest.evidence.partial_logit == pytest.approx(sp["partial_logit"])
        assert p.manifest.evidence.partial_window == sp["partial_window"] == 0.5


def test_the_report_uses_the_partial_window_and_names_it():
    from fakedet.train.splice import Splice

    left = np.zeros((4, 4), bool)
    left[:, :2] = True
    splices = [Splice("a", "left-half", np.zeros((4, 4, 3), np.uint8), left)]
    preds = [_pred([[3.0, 3.0, -3.0, -3.0]] * 4, 0.3)]
    # the reals each hold one loud region: single regions cannot tell them from the splice
    reals = [_pred([[9.0, -3.0, -3.0, -3.0]] + [[-3.0] * 4] * 3, 0.1) for _ in range(40)]
    single = splice_report(reals, preds, splices, window=0.0)
    quarter = splice_report(reals, preds, splices, window=0.5)
    assert single["partial_window"] == 0.0 and quarter["partial_window"] == 0.5
    assert single["partial_caught_of_missed"] == 0.0
    assert quarter["partial_caught_of_missed"] == 1.0 and quarter["false_partial_on_real"] == 0.0
