"""`fakedet train` end to end on tiny generated datasets (resnet50-nodown, clip-mlp)."""

import json

import numpy as np
import torch
from PIL import Image

from fakedet.cli import main
from fakedet.manifest import InputSpec
from fakedet.runtime.preprocess import preprocess
from fakedet.train.checkpoint import load_checkpoint
from torch_helpers import one_thread, tiny_clip  # noqa: F401  (pytest fixtures)


def make_dataset(root, n=3, size=(20, 18)):
    rng = np.random.default_rng(0)
    for gen in ("ldm", "sd"):
        for cls in ("0_real", "1_fake"):
            (root / gen / cls).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(a).save(root / gen / "0_real" / f"{i}.jpg", quality=95)
            Image.fromarray((a // 2 + 64).astype(np.uint8)).save(root / gen / "1_fake" / f"{i}.png")
    return root


def _check_run(out, arch, data):
    cfg = json.loads((out / "best" / "config.json").read_text())
    assert cfg["arch"] == arch and cfg["threshold"] == 0.5
    t = cfg["training"]
    assert t["epochs_done"] == 1 and t["data_digest"] and t["train_images"] > 0 and "balanced_accuracy" in t["metrics"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "val_auc" in json.loads(lines[0])
    model, cfg = load_checkpoint(out / "best")
    spec = InputSpec.from_dict(cfg["input"])
    img = next(data.rglob("*.png"))
    with torch.no_grad():
        logit = model(torch.from_numpy(preprocess(img, spec))[None])
    assert logit.shape == (1, 1) and torch.isfinite(logit).all()
    return cfg


def test_train_resnet50_nodown_end_to_end(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n=2)
    out = tmp_path / "run"
    rc = main(["train", "--arch", "resnet50-nodown", "--pretrained", "none", "--data", str(data), "--out", str(out),
               "--epochs", "1", "--batch", "6", "--augment", "crop_size=16", "--val-fraction", "0.25",
               "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs_done"] == 1 and summary["skipped_images"]["skipped"] == 0
    cfg = _check_run(out, "resnet50-nodown", data)
    assert cfg["input"]["preprocess"]["policy"] == "whole-image"
    assert cfg["model_kwargs"] == {}


def test_train_clip_mlp_end_to_end_with_config_and_cache(tmp_path, capsys, tiny_clip):
    data = make_dataset(tmp_path / "data")
    (data / "ldm" / "0_real" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "train.yaml").write_text(
        f"arch: clip-mlp\nmodel_kwargs: {{clip_model: {tiny_clip}}}\nloss: cvar-auc\nsam_rho: 0.05\n"
        "optimizer: adamw\nlr: 0.001\nweight_decay: 0.01\nepochs: 5\nbatch: 4\n")
    common = ["--data", str(data), "--epochs", "1", "--pretrained", "none", "--cache-dir", str(tmp_path / "cache"),
              "--val-fraction", "0.34", "--no-progress"]
    rc = main(["train", "--config", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "run"), *common])
    assert rc == 1  # the broken image was skipped, counted and named
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped_images"]["skipped"] == 1 and summary["skipped_images"]["first"][0].endswith("broken.jpg")
    cfg = _check_run(tmp_path / "run", "clip-mlp", data)
    assert cfg["training"]["config"]["loss"] == "cvar-auc" and cfg["training"]["config"]["epochs"] == 1
    assert cfg["model_kwargs"]["clip_model"] == tiny_clip and cfg["input"]["preprocess"]["size"] == [32, 32]
    caches = sorted((tmp_path / "cache").iterdir())
    assert len(caches) == 2  # train and validation features
    stamp = [c.stat().st_mtime_ns for c in caches]
    rc = main(["train", "--config", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "run2"), *common])
    assert sorted((tmp_path / "cache").iterdir()) == caches
    assert [c.stat().st_mtime_ns for c in caches] == stamp  # the second run read the cache


def test_cli_stops_on_bad_input_before_work(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n=1)
    (tmp_path / "bad.toml").write_text('arch = "resnet50-nodown"\nepoch = 3\n')
    rc = main(["train", "--config", str(tmp_path / "bad.toml"), "--data", str(data), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown config key(s) ['epoch']" in err and len(err.strip().splitlines()) == 1
    rc = main(["train", "--arch", "resnet50-nodown", "--data", str(data / "ldm" / "0_real"), "--out",
               str(tmp_path / "o")])
    assert rc == 2 and "only real" in capsys.readouterr().err
    rc = main(["train", "--arch", "vgg", "--data", str(data), "--out", str(tmp_path / "o")])
    assert rc == 2 and "known: " in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
