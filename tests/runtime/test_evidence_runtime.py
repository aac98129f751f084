"""Evidence maps in the runtime: Detector.predict(explain=True), tile maps, the partial
verdict, and `fakedet predict --explain`."""

import json

import numpy as np
import pytest
from PIL import Image

from fakedet.manifest import InputSpec, Preprocess
from fakedet.runtime.evidence import EvidenceMap, block_mean, is_partial, tile_layout, tile_map
from fakedet.runtime.scoring import sigmoid



def _images(tmp_path, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def packages(evidence_packages):
    return evidence_packages


def test_block_mean_against_a_loop():
    a = np.arange(35, dtype=np.float32).reshape(5, 7)
    got = block_mean(a, 3)
    ys, xs = [0, 2, 3, 5], [0, 2, 5, 7]
    want = [[a[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].mean() for j in range(3)] for i in range(3)]
    np.testing.assert_allclose(got, want)
    assert block_mean(a, 16).shape == (5, 7)


def test_partial_needs_a_region_over_while_the_image_is_under():
    ev = EvidenceMap(np.array([[-3.0, 2.0], [-3.0, -3.0]], np.float32), "exported", "input", (8, 8), 0.5)
    assert ev.area_over() == 0.25 and abs(ev.max_region() - float(sigmoid(np.array([2.0]))[0])) < 1e-6
    assert ev.max_logit() == 2.0
    assert is_partial(ev, whole_image_fake=False, partial_logit=1.5)
    assert not is_partial(ev, whole_image_fake=True, partial_logit=1.5)  # already a fake: not "partial"
    assert not is_partial(ev, whole_image_fake=False, partial_logit=2.5)


def test_tile_layout_covers_the_image_with_half_overlaps():
    spec = InputSpec(preprocess=Preprocess(policy="center-crop", size=(32, 32))).validate()
    tile, stride, spots = tile_layout(spec, 100, 50)
    assert (tile, stride) == (32, 16)
    xs, ys = sorted({x for x, _ in spots}), sorted({y for _, y in spots})
    assert xs == [0, 16, 32, 48, 64, 68] and ys == [0, 16, 18]  # the last tile ends at the border
    assert tile_layout(spec, 20, 20)[2] == [(0, 0)]  # smaller than a tile: one


def test_tile_map_scores_each_tile_as_an_image():
    spec = InputSpec(preprocess=Preprocess(policy="center-crop", size=(16, 16), small_images="pad")).validate()
    img = np.zeros((32, 48, 3), np.uint8)
    img[:, 32:] = 255  # the right third is white: the "detector" below calls white fake
    ev = tile_map(Image.fromarray(img), spec, lambda t: (t.mean(axis=(1, 2, 3)) > 0).astype(float) * 4 - 2, 0.5)
    assert ev.source == "tiles" and ev.covers == "image" and ev.logits.shape == (4, 6)
    assert (ev.logits[:, :3] == -2).all() and (ev.logits[:, 4:] == 2).all()  # one forward per tile, averaged per cell
    assert ev.logits[0, 3] == 0.0  # cells covered by a white and a dark tile get their mean


def test_predict_explain_returns_an_exact_map(packages, tmp_path):
    from fakedet.runtime.detector import Detector

    paths = _images(tmp_path)
    with Detector.open(packages[0], backend="ort-cpu") as det:
        assert det.explainer().source == "exported"
        plain = det.predict(paths)
        preds = det.predict(paths, explain=True)
    for p, q in zip(plain, preds):
        assert p.evidence is None and "evidence" not in p.to_dict()
        assert q.ok and q.evidence.source == "exported" and q.score == pytest.approx(p.score, abs=1e-6)
        assert float(q.evidence.logits.mean()) == pytest.approx(q.logit, abs=1e-5)  # the map splits the logit
        d = q.to_dict()["evidence"]
        assert len(d["grid"]) <= 16 and all(len(r) <= 16 for r in d["grid"])
        assert 0.0 <= d["area_over_threshold"] <= 1.0 and isinstance(q.partial, bool)
    assert preds[0].evidence.logits.shape == (5, 7)


def test_without_the_output_the_runtime_makes_a_tile_map(packages, tmp_path):
    from fakedet.runtime.detector import Detector

    with Detector.open(packages[1], backend="ort-cpu") as det:
        assert det.explainer().source == "tiles"
        (q,) = det.predict(_images(tmp_path, 1), explain=True)
    assert q.ok and q.evidence.source == "tiles" and q.evidence.covers == "image"
    tile, stride, spots = tile_layout(det.manifest.input, 56, 40)
    assert tile == 32 and q.evidence.logits.shape == (-(-40 // stride), -(-56 // stride))


def test_predict_cli_writes_overlays_and_maps(packages, tmp_path, capsys):
    from fakedet.cli import main

    paths = _images(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "maps"
    rc = main(["predict", str(packages[0]), *map(str, paths), str(bad), "--explain", str(out), "--json", "--quiet",
               "--backend", "ort-cpu"])
    assert rc == 1  # the bad file fails alone
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["error"] is None for r in rows] == [True, True, True, False]
    assert all("grid" in r["evidence"] and "partial" in r for r in rows[:3])
    pngs, npys = sorted(out.glob("*.overlay.png")), sorted(out.glob("*.evidence.npy"))
    assert len(pngs) == len(npys) == 3
    with Image.open(pngs[0]) as im:
        assert im.size == (56, 40)  # drawn on the pixels the model read
    np.testing.assert_allclose(np.load(npys[0]).mean(), rows[0]["logit"], atol=1e-5)


@pytest.mark.parametrize("window", [0.0, 0.25, 0.5, 1.0])
def test_window_means_against_a_loop(window):
    from fakedet.runtime.evidence import window_means

    a = np.random.default_rng(3).normal(size=(7, 12)).astype(np.float32)
    kh, kw = max(1, round(window * 7)), max(1, round(window * 12))
    want = np.array([[a[i:i + kh, j:j + kw].mean() for j in range(12 - kw + 1)] for i in range(7 - kh + 1)])
    np.testing.assert_allclose(window_means(a, window), want, rtol=1e-6, atol=1e-6)
    ev = EvidenceMap(a, "exported", "input", (12, 7), 0.5)
    assert ev.window_logit(window) == pytest.approx(want.max(), abs=1e-6)


def test_a_partial_window_asks_for_an_area_not_one_region():
    one_hot = np.full((4, 4), -3.0, np.float32)
    one_hot[0, 0] = 9.0  # one loud region on a real-looking map
    block = np.full((4, 4), -3.0, np.float32)
    block[:2, :2] = 2.0  # a quarter of the image generated
    for logits, region, quarter in ((one_hot, True, False), (block, True, True)):
        ev = EvidenceMap(logits, "exported", "input", (16, 16), 0.5)
        assert is_partial(ev, False, 1.5) is region
        assert is_partial(ev, False, 1.5, window=0.5) is quarter


def test_anchored_upsampling_against_scipy():
    from scipy.ndimage import map_coordinates

    logits = np.random.default_rng(4).normal(0, 2, (5, 7)).astype(np.float32)
    anchor = ((8.0, 0.0), (8.0, 1.5))  # stride 8; cell 0 centred on pixel 0 (rows), 1.5 (columns)
    ev = EvidenceMap(logits, "exported", "input", (52, 37), 0.5, anchor)
    got = ev.upsampled()
    assert got.shape == (37, 52)
    rows = np.clip((np.arange(37) - 0.0) / 8.0, 0, 4)
    cols = np.clip((np.arange(52) - 1.5) / 8.0, 0, 6)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    want = map_coordinates(ev.probs.astype(np.float64), [rr, cc], order=1, mode="nearest")
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got[16, 25] == pytest.approx(float(ev.probs[2, 3] * 0.9375 + ev.probs[2, 2] * 0.0625), abs=1e-6)
    even = EvidenceMap(logits, "exported", "input", (52, 37), 0.5).upsampled()
    assert np.abs(even - got).max() > 1e-3  # the anchor moves where each cell's evidence lands
    # at half the size, pixel centres map back into input pixels first
    half = ev.upsampled(26, 19)
    rows = np.clip(((np.arange(19) + 0.5) * (37 / 19) - 0.5) / 8.0, 0, 4)
    cols = np.clip(((np.arange(26) + 0.5) * 2 - 0.5 - 1.5) / 8.0, 0, 6)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    np.testing.assert_allclose(half, map_coordinates(ev.probs.astype(np.float64), [rr, cc], order=1, mode="nearest"),
                               atol=1e-6)


def test_the_exported_map_knows_where_its_cells_look(evidence_packages, tmp_path):
    from fakedet.runtime.detector import Detector
    from fakedet.runtime.evidence import anchor_of
    from fakedet.runtime.tiling import Reach

    assert anchor_of(Reach((8, 8), (24, 24), (24, 24))) == ((8.0, 0.0), (8.0, 0.0))
    assert anchor_of(Reach((2, 4), (1, 3), (3, 3))) == ((2.0, 1.0), (4.0, 0.0))
    with Detector.open(evidence_packages[0], backend="ort-cpu") as det:
        pred = det.predict(_images(tmp_path)[:1], explain=True)[0]
    # resnet-tiny-nodown: stride 8, a symmetric reach of 24 px: cell j is centred on pixel 8j
    assert pred.evidence.anchor == ((8.0, 0.0), (8.0, 0.0))
