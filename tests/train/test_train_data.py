"""The training data path: runtime decoding and preprocessing (bit-identical tensors), pairing, bad images."""

import numpy as np
import pytest
import torch
from PIL import Image

from fakedet.errors import DataError
from fakedet.runtime.preprocess import preprocess
from fakedet.train.data import FailureLog, ImageDataset, collate, load_samples, pair_samples, split_samples
from fakedet.train.models import model_input_spec
from torch_helpers import one_thread  # noqa: F401  (pytest fixtures)


def _make(root, n=3, sizes=((30, 22), (41, 37), (64, 50)), fmt="png"):
    rng = np.random.default_rng(0)
    for cls in ("0_real", "1_fake"):
        (root / "gen" / cls).mkdir(parents=True)
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / "gen" / "0_real" / f"im{i}.jpg", quality=90)
        Image.fromarray(255 - a).save(root / "gen" / "1_fake" / f"im{i}.png")
    return root


@pytest.mark.parametrize("arch,kwargs", [("resnet50-nodown", {}), ("resnet50", {"crop_size": 32}),
                                         ("clip-linear", {"clip_model": "ViT-B-32"}),
                                         ("clip-mlp", {"clip_model": "ViT-B-32"})])
def test_training_tensors_are_bit_identical_to_the_runtime(tmp_path, arch, kwargs):
    _make(tmp_path)
    spec = model_input_spec(arch, **kwargs)
    samples = load_samples(tmp_path)
    ds = ImageDataset(samples, spec, augment_cfg=None, paired=False)
    for i, s in enumerate(samples):
        item = ds[i]
        want = preprocess(s.path, spec)
        assert item["x"].shape[0] == 1 and item["y"].item() == s.label
        assert item["x"][0].dtype == torch.float32
        assert np.array_equal(item["x"][0].numpy(), want)  # exact, not approximately


def test_pairs_by_generator_and_relative_name(tmp_path):
    _make(tmp_path, n=3)
    (tmp_path / "gen" / "1_fake" / "extra.png").write_bytes((tmp_path / "gen" / "1_fake" / "im0.png").read_bytes())
    samples = load_samples(tmp_path)
    pairs, unpaired = pair_samples(samples)
    assert unpaired == 1 and len(pairs) == 3
    assert all(r.label == 0 and f.label == 1 and r.path.stem == f.path.stem for r, f in pairs)
    spec = model_input_spec("resnet50-nodown")
    ds = ImageDataset(samples, spec, paired=True)
    item = ds[0]
    assert item["x"].shape[0] == 2 and item["y"].tolist() == [0.0, 1.0]
    train, val = split_samples(samples, 0.34, seed=0)
    assert {s.path.stem for s in val}.isdisjoint({s.path.stem for s in train if s.path.stem != "extra"})


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    _make(tmp_path, n=2)
    (tmp_path / "gen" / "0_real" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    samples = load_samples(tmp_path)
    ds = ImageDataset(samples, model_input_spec("resnet50-nodown"), paired=False)
    batch = collate([ds[i] for i in range(len(ds))])
    assert len(batch) == len(samples) - 1
    assert len(batch.groups) == 2  # whole-image tensors of two sizes stay in separate groups
    fl = FailureLog()
    fl.add(batch.failed)
    assert fl.to_dict()["skipped"] == 1 and fl.to_dict()["first"][0].endswith("broken.jpg")


def test_bad_datasets_stop_before_work(tmp_path):
    (tmp_path / "a" / "0_real").mkdir(parents=True)
    (tmp_path / "a" / "1_fake").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "0_real" / "x.png")
    with pytest.raises(DataError, match="no images"):
        load_samples(tmp_path / "a")
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "1_fake" / "y.png")
    (tmp_path / "a" / "1_fake" / "y.png").unlink()
    (tmp_path / "b" / "0_real").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "b" / "0_real" / "x.png")
    with pytest.raises(DataError, match="only real"):
        load_samples(tmp_path / "b")
