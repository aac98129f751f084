"""Checkpoints: safetensors + config.json, whole or absent, rebuilt offline, clear errors, never unpickled."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from fakedet.errors import FakedetError
from fakedet.manifest import InputSpec
from fakedet.train.checkpoint import load_checkpoint, save_checkpoint
from fakedet.train.models import create_model
from torch_helpers import one_thread, register_clip_config, tiny_clip_config  # noqa: F401  (pytest fixtures)

MICRO = tiny_clip_config(width=16, image_size=16, patch_size=8)


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):

    d = tmp_path_factory.mktemp("small")
    register_clip_config(d, "fakedet-ck-small", MICRO)
    model = create_model("clip-linear", clip_model="fakedet-ck-small").eval()
    return save_checkpoint(d / "ck", model, {"arch": "clip-linear", "model_kwargs": {"clip_model": "fakedet-ck-small"}})


def test_roundtrip(tmp_path, small_ckpt):
    torch.manual_seed(0)
    model = create_model("clip-linear", clip_model="fakedet-ck-small").eval()
    out = save_checkpoint(tmp_path / "ck", model,
                          {"arch": "clip-linear",
                           "model_kwargs": {"clip_model": "fakedet-ck-small", "pretrained": "x.safetensors"},
                           "threshold": 0.4, "training": {"epochs": 1}})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no staging left behind
    cfg = json.loads((out / "config.json").read_text())
    assert "pretrained" not in cfg["model_kwargs"]  # reload never fetches weights
    assert cfg["arch"] == "clip-linear" and cfg["threshold"] == 0.4 and cfg["training"] == {"epochs": 1}
    assert cfg["fakedet_version"]
    assert InputSpec.from_dict(cfg["input"]).preprocess.size == (16, 16)
    loaded, cfg2 = load_checkpoint(out / "model.safetensors")
    assert not loaded.training and cfg2 == cfg
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_roundtrip_clip_with_custom_open_clip_config(tmp_path):
    import open_clip

    register_clip_config(tmp_path, "fakedet-ck-clip", MICRO)
    torch.manual_seed(0)
    model = create_model("clip-mlp", clip_model="fakedet-ck-clip").eval()
    out = save_checkpoint(tmp_path / "ck", model, {"arch": "clip-mlp", "model_kwargs": {"clip_model": "fakedet-ck-clip"}})
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_kwargs"]["clip_config"] == open_clip.get_model_config("fakedet-ck-clip")
    # a process that never registered the config: the checkpoint carries it
    cfg["model_kwargs"]["clip_model"] = "fakedet-ck-clip-elsewhere"
    (out / "config.json").write_text(json.dumps(cfg))
    loaded, _ = load_checkpoint(out)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_errors_are_clear(tmp_path, small_ckpt):
    out = small_ckpt
    with pytest.raises(FakedetError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FakedetError, match="not a fakedet checkpoint"):
        load_checkpoint(tmp_path / "empty")

    def copy(name, cfg_edit=None, tensors_edit=None):
        d = tmp_path / name
        d.mkdir()
        cfg = json.loads((out / "config.json").read_text())
        if cfg_edit:
            cfg_edit(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
        t = load_file(str(out / "model.safetensors"))
        if tensors_edit:
            tensors_edit(t)
        save_file(t, str(d / "model.safetensors"))
        return d

    with pytest.raises(FakedetError, match=r"unknown architecture 'resnet9000' \(known: .*resnet50-nodown"):
        load_checkpoint(copy("arch", lambda c: c.update(arch="resnet9000")))
    with pytest.raises(FakedetError, match="missing tensor"):
        load_checkpoint(copy("missing_t", tensors_edit=lambda t: t.pop("head.weight")))
    with pytest.raises(FakedetError, match="shape mismatch"):
        load_checkpoint(copy("shape", tensors_edit=lambda t: t.update({"head.weight": torch.zeros(2, 8)})))
    with pytest.raises(FakedetError, match="unexpected tensor"):
        load_checkpoint(copy("extra", tensors_edit=lambda t: t.update({"bogus": torch.zeros(1)})))
    with pytest.raises(FakedetError, match="missing field"):
        load_checkpoint(copy("nofield", lambda c: c.pop("input")))
    bad = copy("pickle")
    (bad / "model.safetensors").write_bytes(b"\x80\x04\x95 a pickle, never to be opened")
    with pytest.raises(FakedetError, match="not a readable safetensors"):
        load_checkpoint(bad)


def test_failed_save_leaves_the_old_checkpoint_whole(tmp_path, small_ckpt):
    model, cfg = load_checkpoint(small_ckpt)
    dest = save_checkpoint(tmp_path / "keep", model, cfg)
    before = (dest / "model.safetensors").read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(dest, model, {**cfg, "bad": object()})
    assert (dest / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
