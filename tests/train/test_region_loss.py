"""`--region-loss`: each region of the evidence map trained against its image's label,
checked against an independent computation, on the demo's architecture."""

import numpy as np
import pytest
import torch

from fakedet.errors import DataError
from fakedet.train.config import make_config
from fakedet.train.models import create_model
from fakedet.train.models.evidence import evidence_maps
from fakedet.train.region_loss import region_graph, region_loss
from fakedet.train.trainer import Trainer
from test_train_trainer import make_dataset


def _bce_by_hand(z: np.ndarray, y: float) -> float:
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def test_region_loss_is_the_mean_bce_of_every_region_against_its_image_label():
    rng = np.random.default_rng(0)
    maps = rng.normal(0, 2, (3, 1, 5, 7)).astype(np.float32)
    labels = np.array([0.0, 1.0, 1.0], np.float32)
    want = np.mean([_bce_by_hand(maps[i], labels[i]) for i in range(3)])
    got = float(region_loss(torch.from_numpy(maps), torch.from_numpy(labels)))
    assert got == pytest.approx(want, rel=1e-6)


def test_region_graph_keeps_the_model_logit_and_its_map_mean():
    torch.manual_seed(0)
    model = create_model("resnet-tiny-nodown", width=4).eval()
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        logit, regions = region_graph(model, "resnet-tiny-nodown").eval()(x)
        assert torch.allclose(logit, model(x), atol=1e-6)
    ref_logit, ref_map = evidence_maps(model, x)
    assert torch.allclose(regions, ref_map, atol=1e-6)
    assert torch.allclose(regions.mean(dim=(2, 3)), logit, atol=1e-5)


def _trainer(tmp_path, **kw):
    make_dataset(tmp_path / "data", n=6, size=24)
    cfg = make_config(arch="resnet-tiny-nodown", model_kwargs={"width": 4}, data=str(tmp_path / "data"),
                      out=str(tmp_path / "run"), epochs=1, batch=4, seed=3, val_fraction=0.34,
                      augment={"crop_size": 16}, progress=False, **kw)
    t = Trainer(cfg)
    t.device = torch.device("cpu")
    t._setup_data()
    t._setup_model()
    return t


def test_the_trainer_adds_the_weighted_region_loss_to_the_image_loss(tmp_path):
    t = _trainer(tmp_path, region_loss=0.7)
    t.net.eval()  # no Dropout: the reference below is deterministic
    x, y = torch.randn(4, 3, 24, 24), torch.tensor([0.0, 1.0, 0.0, 1.0])
    with torch.no_grad():
        got = float(t._loss(x, y))
        logit, regions = evidence_maps(t.model, x)
    image = float(torch.nn.functional.binary_cross_entropy_with_logits(logit.reshape(-1), y))
    by_hand = np.mean([_bce_by_hand(regions[i].numpy(), float(y[i])) for i in range(4)])
    assert got == pytest.approx(image + 0.7 * by_hand, rel=1e-5)
    assert got != pytest.approx(image, rel=1e-3)  # the region term is there


def test_a_run_with_region_loss_saves_the_plain_model(tmp_path):
    summary = _trainer(tmp_path, region_loss=1.0).run()
    from safetensors.torch import load_file

    keys = set(load_file(str(tmp_path / "run" / "last" / "model.safetensors")))
    assert keys == set(create_model("resnet-tiny-nodown", width=4).state_dict())
    assert summary["epochs_done"] == 1


def test_an_architecture_without_an_exact_map_is_refused(tmp_path):
    from test_train_trainer import _tiny_cnn_state  # noqa: F401  (registers test-tiny-cnn)

    make_dataset(tmp_path / "data", n=4)
    cfg = make_config(arch="test-tiny-cnn", data=str(tmp_path / "data"), out=str(tmp_path / "run"), epochs=1,
                      batch=4, progress=False, region_loss=1.0)
    with pytest.raises(DataError, match="--region-loss needs an architecture"):
        Trainer(cfg).run()
