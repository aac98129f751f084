"""The demo: bundled photographs, its autoencoder, the generated set, the figures it
reports (checked against scikit-learn / scikit-image), and a full quick run (slow)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("skimage")

from fakedet.demo.data import crop_name, generate, photo_of, write_crops  # noqa: E402
from fakedet.demo.main import AUTOENCODER  # noqa: E402
from fakedet.demo.photos import grid_crops, photos  # noqa: E402
from fakedet.demo.report import auc_table, below_target, psnr_pairs  # noqa: E402


def test_photos_come_from_wheels_and_split_by_photo():
    train, held = photos("train"), photos("heldout")
    assert len(train) >= 12 and {p.name for p in held} == {"chelsea", "flower", "grace_hopper", "rocket"}
    assert not {p.path for p in train} & {p.path for p in held}
    for p in train + held:
        assert "site-packages" in p.path.parts or p.path.is_file()  # a file inside an installed package
        img = p.load()
        assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 96


def test_crops_are_deterministic_and_named_by_photo(tmp_path):
    a = write_crops(tmp_path / "a", "heldout", 32, 3, seed=5)
    b = write_crops(tmp_path / "b", "heldout", 32, 3, seed=5)
    assert len(a) == 12
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes()
        assert Image.open(x).size == (32, 32)
    assert {photo_of(p) for p in a} == {"chelsea", "flower", "grace_hopper", "rocket"}
    assert photo_of(crop_name("grace_hopper", "mix-001")) == "grace_hopper"
    with pytest.raises(Exception, match="smaller"):
        grid_crops(np.zeros((10, 10, 3), np.uint8), 32, 1, np.random.default_rng(0))


def test_defocused_crops_are_the_same_crops_blurred(tmp_path):
    sharp = write_crops(tmp_path / "s", "heldout", 48, 6, seed=3)
    mixed = write_crops(tmp_path / "m", "heldout", 48, 6, seed=3, defocus=0.5)
    assert [b.stem.removesuffix("-defocus") for b in mixed] == [a.stem for a in sharp]
    blurred = [(a, b) for a, b in zip(sharp, mixed) if b.stem.endswith("-defocus")]
    assert 4 <= len(blurred) <= 20  # about half of 24
    for a, b in zip(sharp, mixed):
        x, y = (np.asarray(Image.open(p).convert("L"), dtype=np.float64) for p in (a, b))
        if b.stem.endswith("-defocus"):
            assert np.abs(np.diff(y, axis=1)).mean() < np.abs(np.diff(x, axis=1)).mean()
            assert abs(x.mean() - y.mean()) < 3  # the same place in the photo, only blurred
        else:
            assert np.array_equal(x, y)


def test_auc_table_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    rows = []
    for photo in ("cat", "dog"):
        rows += [(photo, 0, "", float(s)) for s in rng.uniform(0, 0.7, 20)]
        rows += [(photo, 1, "reconstructed", float(s)) for s in rng.uniform(0.3, 1, 15)]
        rows += [(photo, 1, "generated", float(s)) for s in rng.uniform(0.2, 1, 10)]
    t = auc_table(rows)
    for kind in ("reconstructed", "generated"):
        for photo in ("cat", "dog"):
            sel = [r for r in rows if r[0] == photo and (r[1] == 0 or r[2] == kind)]
            assert t[kind][photo] == pytest.approx(roc_auc_score([r[1] for r in sel], [r[3] for r in sel]))
    assert t["all fakes"]["all"] == pytest.approx(roc_auc_score([r[1] for r in rows], [r[3] for r in rows]))


def test_below_target_names_the_photo_and_its_flat_share(tmp_path):
    rng = np.random.default_rng(2)
    flat = np.full((16, 16, 3), 120, np.uint8)
    flat[:, ::2] += 1  # horizontal neighbours differ by exactly 1 grey level: not under 1
    sharp = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    paths = {}
    for i, arr in enumerate([np.full((16, 16, 3), 90, np.uint8), flat, sharp, sharp]):
        Image.fromarray(arr).save(tmp_path / f"f{i}.png")
        paths.setdefault("flower" if i < 3 else "cat", []).append(tmp_path / f"f{i}.png")
    table = {"reconstructed": {"all": 0.9, "flower": 0.81, "cat": 1.0}, "generated": {"all": 0.9, "flower": 0.95, "cat": 0.89}}
    got = below_target(table, {"reconstructed": 0.95, "generated": 0.90}, paths)
    assert got == [{"photo": "cat", "auc": {"generated": 0.89}, "flat_share": 0.0},
                   {"photo": "flower", "auc": {"reconstructed": 0.81}, "flat_share": pytest.approx(1 / 3, abs=1e-3)}]


def test_psnr_matches_skimage(tmp_path):
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(1)
    reals, want = [], []
    (tmp_path / "fake").mkdir()
    for i in range(3):
        a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(tmp_path / f"r{i}.png")
        Image.fromarray(b).save(tmp_path / "fake" / f"r{i}.png")
        reals.append(tmp_path / f"r{i}.png")
        want.append(peak_signal_noise_ratio(a, b, data_range=255))
    assert psnr_pairs(reals, tmp_path / "fake") == pytest.approx(np.mean(want), rel=1e-9)


def test_bundled_autoencoder_loads_like_any_diffusers_model_and_reproduces_its_psnr():
    import torch

    from fakedet.train.autoencoder import load_autoencoder, reconstruct

    ae = load_autoencoder(str(AUTOENCODER))
    cfg = ae.model.config
    assert ae.kind == "kl" and ae.factor == 4 and cfg.latent_channels == 4
    assert (AUTOENCODER / "diffusion_pytorch_model.safetensors").stat().st_size < 8_000_000
    rec = json.loads((AUTOENCODER / "training.json").read_text())
    assert rec["heldout_photos"] == ["chelsea", "flower", "grace_hopper", "rocket"]
    assert not set(rec["train_photos"]) & set(rec["heldout_photos"])
    # the recorded per-photo PSNR, recomputed for one photo on the same crops (seed 1234)
    torch.set_num_threads(2)
    rng = np.random.default_rng(1234)
    crops = {p.name: grid_crops(p.load(), 96, 12, rng) for p in photos("heldout")}
    x = np.stack(crops["chelsea"])
    y = np.stack(reconstruct(ae, list(x), list(range(12)), mode="mean"))
    mse = ((x.astype(np.float64) - y) ** 2).reshape(12, -1).mean(1)
    got = float(np.mean(10 * np.log10(255.0**2 / mse)))
    assert got == pytest.approx(rec["heldout_psnr_per_photo_db"]["chelsea"], abs=0.3)


def test_generated_images_come_from_no_photo(tmp_path):
    reals = write_crops(tmp_path / "r", "heldout", 32, 2, seed=0)
    out = generate(AUTOENCODER, reals, tmp_path / "g", 6, seed=0)
    assert len(out) == 6 and {p.name.split("__")[1].split("-")[0] for p in out} == {"mix", "noise"}
    real_arrays = [np.asarray(Image.open(p)) for p in reals]
    for p in out:
        arr = np.asarray(Image.open(p))
        assert arr.shape == (32, 32, 3) and photo_of(p) in {"chelsea", "flower", "grace_hopper", "rocket"}
        assert all(np.abs(arr.astype(int) - r).mean() > 1 for r in real_arrays)
    again = generate(AUTOENCODER, reals, tmp_path / "g2", 6, seed=0)
    assert [p.read_bytes() for p in out] == [p.read_bytes() for p in again]


@pytest.mark.slow
def test_quick_demo_runs_every_stage(tmp_path):
    """`fakedet demo --quick` end to end (about 1 minute on 2 cores; slow)."""
    r = subprocess.run([sys.executable, "-m", "fakedet", "demo", "--quick", "--out", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert sum(1 for ln in lines if ln.startswith("[")) == 13  # one progress line per stage
    assert "Warning" not in r.stdout + r.stderr and "pretrained" not in r.stderr
    sm = json.loads((tmp_path / "d" / "summary.json").read_text())
    for tag in ("checkpoint", "fp32", "int8"):
        assert set(sm["auc"][tag]) == {"reconstructed", "generated", "all fakes"}
        assert 0.5 < sm["auc"][tag]["reconstructed"]["all"] <= 1.0
    assert abs(sm["auc"]["fp32"]["all fakes"]["all"] - sm["auc"]["int8"]["all fakes"]["all"]) <= 0.005
    verdict = json.loads((tmp_path / "d" / "eval-verdict" / "calibration.json").read_text())["held_out"]
    assert verdict["auc_after"] == verdict["auc_before"] and sm["predictions"][0]["operating_point"] is None
    for f in ("eval-checkpoint/roc.png", "bench.png", "eval-verdict/calibration.png", "detector.fdet/model.int8.onnx",
              "detector.fdet/calibration.json"):
        assert (tmp_path / "d" / f).is_file(), f


@pytest.mark.slow
def test_a_refused_int8_leaves_the_demo_running_on_fp32(tmp_path):
    """The accuracy guard may refuse INT8 on a machine whose training lands elsewhere: the demo
    says so and finishes on FP32 (forced here: a zero score-shift budget, strict, no fallback)."""
    from dataclasses import replace

    from fakedet.demo.main import QUICK, run_demo

    s = replace(QUICK, calibrate_opts=("--strict", "--max-score-shift", "0", "--max-float-layers", "0"))
    sm = run_demo(tmp_path / "d", settings=s)
    assert sm["calibration_guard"]["refused"] is True and "int8" not in sm["auc"]
    assert not (tmp_path / "d" / "detector.fdet" / "model.int8-cpu.onnx").exists()
    titles = [x["title"] for x in sm["stages"]]
    assert len(titles) == 13 and "skipped" in sm["stages"][titles.index("evaluate the package, ONNX Runtime INT8")]["figure"]
    assert (tmp_path / "d" / "bench.png").is_file() and sm["predictions"]
