"""The demo's small detector: registered beside resnet50-nodown, no early downsampling."""

import pytest

torch = pytest.importorskip("torch")

from fakedet.train.models import create_model, list_models, model_input_spec  # noqa: E402


def test_registered_and_small():
    assert {"resnet-tiny-nodown", "resnet50-nodown"} <= set(list_models())
    m = create_model("resnet-tiny-nodown")
    assert sum(p.numel() for p in m.parameters()) < 1_000_000
    spec = model_input_spec("resnet-tiny-nodown")
    assert spec.preprocess.policy == "whole-image"


def test_no_early_downsampling_and_any_size():
    m = create_model("resnet-tiny-nodown").eval()
    x = torch.randn(2, 3, 40, 56)
    stem = m.stem(x)
    assert stem.shape[-2:] == x.shape[-2:]  # full resolution into the first block
    assert m.stages[0](stem).shape[-2:] == x.shape[-2:]
    with torch.no_grad():
        assert m(x).shape == (2, 1)
        assert m(torch.randn(1, 3, 96, 96)).shape == (1, 1)


def test_weights_round_trip(tmp_path):
    from safetensors.torch import save_file

    a = create_model("resnet-tiny-nodown").eval()
    save_file({k: v.contiguous() for k, v in a.state_dict().items()}, str(tmp_path / "w.safetensors"))
    b = create_model("resnet-tiny-nodown", pretrained=str(tmp_path / "w.safetensors")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
