"""The training loop: resume gives the same result as an uninterrupted run, a tiny set is overfit,
the config is checked before any work."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from fakedet.errors import DataError
from fakedet.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec, Preprocess
from fakedet.train.config import make_config
from fakedet.train.models import list_models, register_model
from fakedet.runtime.metrics import auc_of_any_scores, validation_metrics
from fakedet.train.trainer import Trainer
from torch_helpers import micro_clip, one_thread  # noqa: F401  (pytest fixtures)


def _tiny_spec(**_):
    return InputSpec(mean=IMAGENET_MEAN, std=IMAGENET_STD, dynamic_axes=("batch", "height", "width"),
                     preprocess=Preprocess(policy="whole-image", size=None)).validate()


if "test-tiny-cnn" not in list_models():
    # a stand-in for resnet50-nodown with the same ingredients (conv, BatchNorm, Dropout): the
    # trainer is under test here, not the architecture, and 2 CPU cores are shared
    @register_model(name="test-tiny-cnn", input_spec=_tiny_spec)
    def _tiny_cnn(pretrained="none", width=8):
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(width, 1))


def make_dataset(root, n=6, size=24, seed=0):
    rng = np.random.default_rng(seed)
    for cls in ("0_real", "1_fake"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / "0_real" / f"{i}.png")
        smooth = ((a.astype(np.int32) + np.roll(a, 1, 0) + np.roll(a, 1, 1) + np.roll(a, 1, (0, 1))) // 4)
        Image.fromarray(smooth.astype(np.uint8)).save(root / "1_fake" / f"{i}.png")
    return root


def _cfg(tmp_path, out, **kw):
    base = dict(arch="test-tiny-cnn", data=str(tmp_path / "data"), out=str(out), epochs=3, batch=4, lr=5e-3,
                seed=7, val_fraction=0.34, augment={"crop_size": 16}, progress=False, patience=1,
                min_lr=1e-9)
    base.update(kw)
    return make_config(**base)


def _strip(lines):
    return [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in lines]


@pytest.mark.parametrize("sam_rho", [0.0, 0.05])
def test_resume_matches_uninterrupted_run(tmp_path, sam_rho):
    make_dataset(tmp_path / "data")
    Trainer(_cfg(tmp_path, tmp_path / "full", sam_rho=sam_rho)).run()

    class Crash(Exception):
        pass

    def crash_after_first(trainer, epoch, record):
        if epoch == 0:
            raise Crash

    with pytest.raises(Crash):
        Trainer(_cfg(tmp_path, tmp_path / "resumed", sam_rho=sam_rho), on_epoch_end=crash_after_first).run()
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 1
    Trainer(_cfg(tmp_path, tmp_path / "resumed", sam_rho=sam_rho)).run()

    for sub in ("last", "best"):
        a = load_file(str(tmp_path / "full" / sub / "model.safetensors"))
        b = load_file(str(tmp_path / "resumed" / sub / "model.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), sub
    a = load_file(str(tmp_path / "full" / "last" / "training_state.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "last" / "training_state.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    full = _strip((tmp_path / "full" / "metrics.jsonl").read_text().splitlines())
    assert full == _strip((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines())
    assert len(full) == 3
    # and training did move the weights: the comparison above is not between two untouched inits
    torch.manual_seed(7)
    init = {k: v for k, v in _tiny_cnn_state().items()}
    assert any(not torch.equal(init[k], a_k) for k, a_k in load_file(
        str(tmp_path / "full" / "last" / "model.safetensors")).items() if k in init and init[k].is_floating_point())


def _tiny_cnn_state():
    from fakedet.train.models import create_model

    return create_model("test-tiny-cnn").state_dict()


def test_resume_refuses_a_changed_config(tmp_path):
    make_dataset(tmp_path / "data", n=4)
    Trainer(_cfg(tmp_path, tmp_path / "run", epochs=1)).run()
    with pytest.raises(DataError, match="cannot resume: 'batch'"):
        Trainer(_cfg(tmp_path, tmp_path / "run", epochs=2, batch=2)).run()


def test_overfits_a_tiny_dataset(tmp_path):
    make_dataset(tmp_path / "data", n=8, size=16)
    cfg = _cfg(tmp_path, tmp_path / "run", epochs=25, batch=8, lr=3e-2, augment={"off": True}, paired=False,
               schedule="none", val_fraction=0.25)
    summary = Trainer(cfg).run()
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < 0.5 * losses[0], losses
    assert min(losses[-3:]) < 0.35
    assert summary["best_balanced_accuracy"] >= 0.75


def test_plateau_decays_lr_then_stops(tmp_path):
    make_dataset(tmp_path / "data", n=4)
    cfg = _cfg(tmp_path, tmp_path / "run", epochs=30, lr=1e-9, min_lr=1e-11, patience=1, min_delta=0.5)
    summary = Trainer(cfg).run()
    lrs = [h["lr"] for h in summary["history"]]
    assert summary["history"][-1].get("event") == "early stop"
    assert len(lrs) < 30 and lrs[-1] == pytest.approx(1e-11)
    assert any("lr decayed" in h.get("event", "") for h in summary["history"])


def test_metrics_against_explicit_computation():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(40, generator=g), (torch.rand(40, generator=g) > 0.5).float()
    pos = [a for a, b in zip(logits.tolist(), labels.tolist()) if b]
    neg = [a for a, b in zip(logits.tolist(), labels.tolist()) if not b]
    auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert auc_of_any_scores(labels.numpy(), logits.numpy()) == pytest.approx(auc)
    m = validation_metrics(labels.numpy(), logits.numpy(), 0.5)
    real_acc = sum(1 for a in neg if a < 0) / len(neg)
    fake_acc = sum(1 for a in pos if a >= 0) / len(pos)
    assert m["balanced_accuracy"] == pytest.approx((real_acc + fake_acc) / 2)


def test_config_file_and_errors_before_work(tmp_path):
    make_dataset(tmp_path / "data", n=2)
    (tmp_path / "c.yaml").write_text("arch: test-tiny-cnn\nepochs: 4\nlr: '1e-3'\naugment: {jpeg: 0.1}\n")
    cfg = make_config(tmp_path / "c.yaml", epochs=2, data="d", out="o")
    assert cfg.epochs == 2 and cfg.lr == 1e-3 and cfg.augment == {"jpeg": 0.1}
    (tmp_path / "c.toml").write_text('arch = "resnet50"\nbatch = 8\n[model_kwargs]\ncrop_size = 64\n')
    cfg = make_config(tmp_path / "c.toml")
    assert cfg.batch == 8 and cfg.model_kwargs == {"crop_size": 64}
    (tmp_path / "bad.yaml").write_text("arch: resnet50\nlearning_rate: 0.1\n")
    with pytest.raises(DataError, match=r"unknown config key\(s\) \['learning_rate'\]"):
        make_config(tmp_path / "bad.yaml")
    with pytest.raises(DataError, match="not options of 'resnet50'"):
        Trainer(_cfg(tmp_path, tmp_path / "x", arch="resnet50", model_kwargs={"depth": 3}))
    with pytest.raises(DataError, match="unknown key"):
        Trainer(_cfg(tmp_path, tmp_path / "x", augment={"jpg": 0.5}))
    with pytest.raises(DataError, match="batch must be even"):
        Trainer(_cfg(tmp_path, tmp_path / "x", batch=3))
    assert not (tmp_path / "x").exists()


def test_clip_linear_and_caption_features_from_csv(tmp_path, micro_clip):
    from fakedet.train.checkpoint import load_checkpoint

    make_dataset(tmp_path / "data", n=4, size=16)
    rows = ["path,label,caption"] + [f"data/0_real/{i}.png,real,a photo {i}" for i in range(4)] + \
        [f"data/1_fake/{i}.png,fake,a render {i}" for i in range(4)]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    common = dict(epochs=2, batch=4, lr=1e-2, val_fraction=0.25, paired=False)
    Trainer(_cfg(tmp_path, tmp_path / "lin", arch="clip-linear", model_kwargs={"clip_model": micro_clip},
                 **common)).run()
    model, cfg = load_checkpoint(tmp_path / "lin" / "best")
    assert cfg["arch"] == "clip-linear" and model.head.in_features == 8
    Trainer(_cfg(tmp_path, tmp_path / "txt", arch="clip-mlp", data=str(tmp_path / "list.csv"),
                 model_kwargs={"clip_model": micro_clip, "use_text": True}, **common)).run()
    model, cfg = load_checkpoint(tmp_path / "txt" / "best")
    assert cfg["model_kwargs"]["use_text"] is True and model.head[0].in_features == 16
    with pytest.raises(DataError, match="caption"):  # a folder dataset has no captions
        Trainer(_cfg(tmp_path, tmp_path / "nocap", arch="clip-mlp",
                     model_kwargs={"clip_model": micro_clip, "use_text": True}, **common)).run()


def test_feature_cache_key_follows_backbone_and_data(tmp_path, micro_clip):
    from fakedet.train.data import load_samples
    from fakedet.train.features import cache_key
    from fakedet.train.models import create_model, model_input_spec

    make_dataset(tmp_path / "data", n=2, size=16)
    samples = load_samples(tmp_path / "data")
    spec = model_input_spec("clip-mlp", clip_model=micro_clip)
    torch.manual_seed(0)
    m = create_model("clip-mlp", clip_model=micro_clip)
    k = cache_key(m, spec, samples, False)
    assert k == cache_key(m, spec, samples, False)
    assert k != cache_key(m, spec, samples[:-1], False)
    assert k != cache_key(m, spec, samples, True)
    with torch.no_grad():
        next(m.encoder.parameters()).add_(1e-3)
    assert k != cache_key(m, spec, samples, False)
    before = cache_key(m, spec, samples, False)
    samples[0].path.write_bytes(samples[1].path.read_bytes())  # same names, new content
    assert cache_key(m, spec, samples, False) != before


def test_arch_recipes_are_defaults_under_file_and_flags(tmp_path):
    cfg = make_config(arch="clip-mlp")
    assert (cfg.loss, cfg.optimizer, cfg.sam_rho, cfg.schedule, cfg.paired) == ("cvar-auc", "adamw", 0.05, "cosine",
                                                                                False)
    assert make_config(arch="clip-mlp", loss="bce").loss == "bce"
    (tmp_path / "c.yaml").write_text("arch: clip-mlp\nsam_rho: 0\n")
    assert make_config(tmp_path / "c.yaml").sam_rho == 0.0
    nodown = make_config(arch="resnet50-nodown")
    assert (nodown.loss, nodown.optimizer, nodown.lr, nodown.paired, nodown.patience) == ("bce", "adam", 1e-4, True, 10)
