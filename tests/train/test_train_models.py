"""The model registry and the four architectures: shapes, heads, input specs, pretrained loading, ONNX."""


import numpy as np
import pytest
import torch
from torch import nn

from fakedet.errors import FakedetError
from fakedet.train.models import create_model, list_models, model_input_spec, register_model
from torch_helpers import one_thread, tiny_clip  # noqa: F401  (pytest fixtures)


def test_registry_lists_the_four_and_rejects_unknown():
    assert {"resnet50-nodown", "resnet50", "clip-mlp", "clip-linear"} <= set(list_models())
    with pytest.raises(FakedetError, match="known: .*resnet50-nodown"):
        create_model("resnet51")
    with pytest.raises(FakedetError, match="unknown architecture"):
        model_input_spec("nope")


def test_register_model_decorator():
    def spec(**_):
        return model_input_spec("resnet50")

    @register_model(name="test-register-probe", input_spec=spec)
    def builder(pretrained="none", width=3):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(1))

    assert "test-register-probe" in list_models()
    assert create_model("test-register-probe", width=5) is not None
    with pytest.raises(ValueError, match="already registered"):
        register_model(name="test-register-probe", input_spec=spec)(builder)
    from fakedet.train.models import registry

    registry._REGISTRY.pop("test-register-probe")  # leave the registry as other tests expect it
    assert "test-register-probe" not in list_models()


def test_resnet50_nodown_structure_and_spec():
    torch.manual_seed(0)
    m = create_model("resnet50-nodown").eval()
    assert m.conv1.stride == (1, 1) and m.maxpool.stride == 1
    drop, lin = m.fc
    assert isinstance(drop, nn.Dropout) and drop.p == 0.5 and lin.in_features == 2048 and lin.out_features == 1
    assert abs(lin.weight.std().item() - 0.02) < 0.003 and lin.bias.abs().max().item() == 0
    spec = model_input_spec("resnet50-nodown")
    assert spec.preprocess.policy == "whole-image" and spec.dynamic_axes == ("batch", "height", "width")
    assert m(torch.zeros(2, 3, 20, 28)).shape == (2, 1)
    # no early downsampling: the first block sees the full resolution
    feats = m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(torch.zeros(1, 3, 20, 28))))))
    assert feats.shape[-2:] == (20, 28)


def test_resnet50_cnndetection():
    m = create_model("resnet50", crop_size=64).eval()
    assert isinstance(m.fc, nn.Linear) and m.fc.out_features == 1
    spec = model_input_spec("resnet50", crop_size=64)
    assert spec.preprocess.policy == "center-crop" and spec.preprocess.size == (64, 64)
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 1)


def test_resnet_pretrained_from_local_safetensors_only(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet50

    src = resnet50(weights=None)
    with torch.no_grad():
        src.conv1.weight.fill_(0.125)
    path = tmp_path / "r50.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    m = create_model("resnet50-nodown", pretrained=str(path))
    assert torch.all(m.conv1.weight == 0.125) and m.conv1.stride == (1, 1)
    with pytest.raises(FakedetError, match="never downloads"):
        create_model("resnet50", pretrained="imagenet")
    pt = tmp_path / "r50.pth"
    pt.write_bytes(b"pickle")
    with pytest.raises(FakedetError, match="never loaded"):
        create_model("resnet50", pretrained=str(pt))
    bad = tmp_path / "bad.safetensors"
    save_file({"conv1.weight": torch.zeros(3)}, str(bad))
    with pytest.raises(FakedetError, match="do not fit"):
        create_model("resnet50", pretrained=str(bad))


def test_clip_mlp_head_and_image_only_forward(tiny_clip):
    torch.manual_seed(0)
    m = create_model("clip-mlp", clip_model=tiny_clip).eval()
    layers = list(m.head)
    assert [type(l).__name__ for l in layers] == ["Linear", "BatchNorm1d", "LeakyReLU", "Dropout"] * 3 + ["Linear"]
    assert layers[2].negative_slope == 0.01 and layers[3].p == pytest.approx(0.335)
    assert all(not p.requires_grad for p in m.encoder.parameters())
    x = torch.randn(3, 3, 32, 32)
    assert m(x).shape == (3, 1)
    spec = model_input_spec("clip-mlp", clip_model=tiny_clip)
    assert spec.preprocess.policy == "resize-center-crop" and spec.preprocess.size == (32, 32)
    assert spec.preprocess.interpolation == "bicubic" and spec.preprocess.resize_shorter == 32
    m.train()
    assert not m.encoder.training and m.head.training


def test_clip_mlp_with_text_features(tiny_clip):
    m = create_model("clip-mlp", clip_model=tiny_clip, use_text=True).eval()
    assert m.head[0].in_features == 32
    tokens = m.tokenize(["a photo", "a cat"])
    text = m.text_features(tokens)
    assert m(torch.randn(2, 3, 32, 32), text).shape == (2, 1)
    with pytest.raises(FakedetError, match="text"):
        m(torch.randn(2, 3, 32, 32))


def test_clip_pretrained_local_file_and_bad_tag(tiny_clip, tmp_path):
    import open_clip
    from safetensors.torch import save_file

    src = open_clip.create_model(tiny_clip)
    with torch.no_grad():
        src.visual.conv1.weight.fill_(0.5)
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous().clone() for k, v in src.state_dict().items()}, str(path))
    m = create_model("clip-linear", pretrained=str(path), clip_model=tiny_clip)
    assert torch.all(m.encoder.conv1.weight == 0.5)
    with pytest.raises(FakedetError, match="open_clip tag"):
        create_model("clip-linear", pretrained="no-such-tag", clip_model=tiny_clip)
    with pytest.raises(FakedetError, match="unknown open_clip architecture"):
        create_model("clip-mlp", clip_model="ViT-Q-99")


def test_vit_b32_builds_with_default_spec():
    spec = model_input_spec("clip-mlp", clip_model="ViT-B-32")
    assert spec.preprocess.size == (224, 224) and tuple(round(v, 4) for v in spec.mean) == (0.4815, 0.4578, 0.4082)
    m = create_model("clip-mlp", clip_model="ViT-B-32").eval()
    assert m.head[0].in_features == 512


@pytest.mark.parametrize("arch", ["clip-mlp", "resnet50-nodown"])
def test_onnx_export_matches_torch(tmp_path, arch, tiny_clip):
    ort = pytest.importorskip("onnxruntime")
    kwargs = {"clip_model": tiny_clip} if arch.startswith("clip") else {}
    m = create_model(arch, **kwargs).eval()
    h = 32 if arch.startswith("clip") else 24
    x = torch.randn(2, 3, h, h)
    path = tmp_path / "m.onnx"
    with torch.no_grad():
        torch.onnx.export(m, (x,), str(path), input_names=["image"], output_names=["logit"],
                          dynamic_axes={"image": {0: "batch"}, "logit": {0: "batch"}}, dynamo=False)
        want = m(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert got.shape == (2, 1)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
