"""Paired ("synced") augmentation: a real image and its reconstruction get the identical transform."""

import numpy as np
import pytest
from PIL import Image

from fakedet.errors import DataError
from fakedet.train.augment import AugmentConfig, augment, augment_pair

ALL_ON = dict(resized_crop=1.0, resized_crop_size=40, color_jitter=1.0, grayscale=0.0, cutout=1.0, noise=1.0,
              blur=1.0, jpeg=1.0, webp=1.0, rotate90=1.0, flip=1.0, crop=1.0, crop_size=24)


def _img(seed, size=(36, 30)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_pair_gets_identical_transform_and_params():
    cfg = AugmentConfig()  # the paper's probabilities
    real = _img(0)
    fake = Image.fromarray(np.clip(np.asarray(real).astype(int) + 7, 0, 255).astype(np.uint8))
    for seed in range(12):
        logs = ([], [])
        a, b = augment_pair(real, fake, cfg, [seed, 1, 2], logs)
        assert logs[0] == logs[1] and logs[0]
        assert a.size == b.size
    # the same content in both slots comes out byte-identical (every op and draw matched)
    for seed in range(12):
        a, b = augment_pair(real, real.copy(), AugmentConfig(**ALL_ON), seed)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_geometric_ops_move_real_and_fake_pixels_together():
    # only geometry: the fake minus the real is a fixed pattern that must follow the same crop/flip/rotation
    cfg = AugmentConfig(resized_crop=0, color_jitter=0, grayscale=0, cutout=0, noise=0, blur=0, jpeg=0, webp=0,
                        rotate90=1, flip=0.5, crop=1, crop_size=16)
    real = _img(1, (32, 32))
    marker = np.zeros((32, 32, 3), np.uint8)
    marker[3, 5] = 200  # a single bright pixel only in the fake
    fake = Image.fromarray(np.clip(np.asarray(real).astype(int) + marker, 0, 255).astype(np.uint8))
    for seed in range(20):
        a, b = augment_pair(real, fake, cfg, seed)
        ra, rb = np.asarray(a).astype(int), np.asarray(b).astype(int)
        other = np.asarray(augment(fake, cfg, np.random.default_rng(seed + 1000))).astype(int)
        diff = (rb - ra) != 0
        assert diff.sum() <= 3  # at most the marker pixel differs: the rest was transformed identically
        assert other.shape == rb.shape


def test_different_seeds_differ_and_all_ops_run():
    cfg = AugmentConfig(**ALL_ON)
    img = _img(2)
    outs = {np.asarray(augment(img, cfg, np.random.default_rng(s))).tobytes() for s in range(5)}
    assert len(outs) == 5
    log = []
    augment(img, cfg, np.random.default_rng(0), log)
    assert [e[0] for e in log] == ["resized_crop", "color_jitter", "cutout", "noise", "blur", "jpeg", "webp",
                                   "rotate90", "flip", "crop"]
    assert augment(img, cfg, np.random.default_rng(0)).size == (24, 24)


def test_zero_probabilities_leave_the_image_alone():
    cfg = AugmentConfig(**{k: (0.0 if not k.endswith("_size") else v) for k, v in ALL_ON.items()})
    img = _img(3)
    assert np.array_equal(np.asarray(augment(img, cfg, np.random.default_rng(0))), np.asarray(img))


def test_small_images_are_padded_for_the_crop_and_config_is_checked():
    cfg = AugmentConfig(**{**{k: 0.0 for k in ALL_ON if not k.endswith("_size")}, "crop": 1.0, "crop_size": 48})
    assert augment(_img(4, (20, 10)), cfg, np.random.default_rng(0)).size == (48, 48)
    with pytest.raises(DataError, match="unknown key"):
        AugmentConfig.from_dict({"jpg": 0.5})
    with pytest.raises(DataError, match="probability"):
        AugmentConfig.from_dict({"jpeg": 1.5})
    with pytest.raises(DataError, match="differ in size"):
        augment_pair(_img(0, (8, 8)), _img(0, (9, 8)), AugmentConfig(), 0)


def test_downscale_shrinks_both_of_a_pair_alike_within_its_range():
    cfg = AugmentConfig(**{**{k: 0.0 for k in ALL_ON if not k.endswith("_size")}, "downscale": 1.0,
                           "downscale_min": 0.5})
    real = _img(5, (96, 96))
    sizes = set()
    for seed in range(30):
        logs = ([], [])
        a, b = augment_pair(real, real.copy(), cfg, seed, logs)
        assert np.array_equal(np.asarray(a), np.asarray(b)) and logs[0] == logs[1]
        assert a.size[0] == a.size[1] and 48 <= a.size[0] <= 96
        sizes.add(a.size[0])
    assert min(sizes) < 60 and max(sizes) > 84  # the whole range is drawn

