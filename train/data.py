"""Training and validation datasets over fakedet.runtime.dataset_index samples.

Images are decoded with the runtime's load_image and turned into tensors with the
runtime's geometry + normalize, so without augmentation a training tensor is
bit-identical to what `fakedet predict` feeds the exported model. An image that
cannot be read is skipped and reported (the batch goes on without it)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fakedet.errors import DataError, FakedetError
from fakedet.manifest import InputSpec
from fakedet.runtime.dataset_index import Sample, digest, index_dataset
from fakedet.runtime.imageio import load_image
from fakedet.runtime.preprocess import preprocess_image

from .augment import AugmentConfig, augment, augment_pair

log = logging.getLogger("fakedet.train")


def to_tensor(img, spec: InputSpec, name: str) -> torch.Tensor:
    return torch.from_numpy(preprocess_image(img, spec, name))


def pair_samples(samples: list[Sample]) -> tuple[list[tuple[Sample, Sample]], int]:
    """(real, fake) pairs sharing generator folder and key (`0_real/a/x.jpg` <-> `1_fake/a/x.png`),
    and how many images had no partner."""
    reals = {(s.generator, s.key): s for s in samples if s.label == 0}
    pairs, used = [], 0
    for s in samples:
        if s.label == 1 and (r := reals.get((s.generator, s.key))) is not None:
            pairs.append((r, s))
            used += 2
    return pairs, len(samples) - used


class ImageDataset(Dataset):
    """Items are one image, or one (real, fake) pair when `paired`. Each item is a dict
    {x: (k,3,H,W), y: (k,), names, failed: [(name, problem)]}; k = 0 when unreadable.

    Augmentation draws from a generator seeded by (seed, epoch, index): the same item in
    the same epoch gets the same transform whatever the worker or a resume."""

    def __init__(self, samples: list[Sample], spec: InputSpec, augment_cfg: AugmentConfig | None = None,
                 paired: bool = False, seed: int = 0):
        self.spec, self.aug, self.seed, self.epoch = spec, augment_cfg, int(seed), 0
        self.paired = paired
        if paired:
            pairs, unpaired = pair_samples(samples)
            if not pairs:
                raise DataError("paired training needs fakes named like their reals (0_real/x.jpg <-> 1_fake/x.png); "
                                "no pairs found (train with --unpaired for unaligned data)")
            if unpaired:
                log.warning("paired mode: %d image(s) without a partner are not used", unpaired)
            self.items: list = pairs
        else:
            self.items = list(samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        group = item if self.paired else (item,)
        names = [str(s.path) for s in group]
        try:
            imgs = [load_image(s.path, self.spec.preprocess.max_pixels) for s in group]
            if self.aug is not None:
                seed = [self.seed, self.epoch, index]
                imgs = list(augment_pair(*imgs, self.aug, seed)) if self.paired else \
                    [augment(imgs[0], self.aug, np.random.default_rng(seed))]
            x = torch.stack([to_tensor(im, self.spec, n) for im, n in zip(imgs, names)])
        except FakedetError as e:
            return {"x": None, "y": None, "names": names, "failed": [(names[0], str(e))]}
        y = torch.tensor([s.label for s in group], dtype=torch.float32)
        return {"x": x, "y": y, "names": names, "failed": []}


@dataclass
class Batch:
    """Same-shape groups of images (whole-image validation mixes sizes), plus failures."""

    groups: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(y) for _, y in self.groups)


def collate(items: list[dict]) -> Batch:
    by_shape: dict[tuple, list[dict]] = defaultdict(list)
    batch = Batch()
    for it in items:
        batch.failed.extend(it["failed"])
        if it["x"] is not None:
            by_shape[tuple(it["x"].shape[1:])].append(it)
    for group in by_shape.values():
        batch.groups.append((torch.cat([g["x"] for g in group]), torch.cat([g["y"] for g in group])))
        batch.names.extend(n for g in group for n in g["names"])
    return batch


class FailureLog:
    """Counts skipped images and keeps the first few names for the report."""

    def __init__(self, keep: int = 5):
        self.count, self.first, self.keep = 0, [], keep

    def add(self, failed: list[tuple[str, str]]) -> None:
        for name, problem in failed:
            if self.count == 0 or len(self.first) < self.keep:
                log.warning("skipped unreadable image: %s", problem)
            self.count += 1
            if len(self.first) < self.keep:
                self.first.append(name)

    def to_dict(self) -> dict:
        return {"skipped": self.count, "first": self.first}


def load_samples(source: str | Path) -> list[Sample]:
    """index_dataset (folders or CSV); stops before any work on an empty class folder or one class."""
    return index_dataset(source, require_both=True)


def data_digest(samples: list[Sample], content_limit: int = 20000) -> tuple[str, bool]:
    """(digest, whether file bytes went into it): bytes are hashed up to `content_limit` images;
    beyond that, names, labels and generators only (reading millions of files costs hours)."""
    content = len(samples) <= content_limit
    return digest(samples, content=content), content


def split_samples(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A validation split that keeps real/fake pairs together (split by generator+key)."""
    keys = sorted({(s.generator, s.key) for s in samples})
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(len(keys) * fraction))) if fraction > 0 else 0
    val_keys = {keys[i] for i in rng.permutation(len(keys))[:n_val]}
    train = [s for s in samples if (s.generator, s.key) not in val_keys]
    val = [s for s in samples if (s.generator, s.key) in val_keys]
    for part, name in ((train, "training"), (val, "validation")):
        if n_val and {s.label for s in part} != {0, 1}:
            raise DataError(f"the {name} split holds only one class; give --val-data or more images")
    return train, val
