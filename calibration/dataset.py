"""Calibration and evaluation sets: chosen deterministically, stratified over real/fake
and generator folders, and read through the runtime's preprocessing so the tensors are
exactly those the model sees in service."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedet.errors import DataError, ImageError
from fakedet.manifest import InputSpec
from fakedet.runtime.dataset_index import Sample, digest, index_dataset
from fakedet.runtime.imageio import expand_paths
from fakedet.runtime.preprocess import preprocess

log = logging.getLogger("fakedet.calibration")

UNLABELLED = -1


def progress_bar(items, progress: bool, **kw):
    """`items` under a tqdm bar (leave=False) when `progress` and tqdm is installed; else `items`."""
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:
            return items
        return tqdm(items, leave=False, **kw)
    return items


@dataclass
class TensorSet:
    """Preprocessed tensors with their samples (one tensor per sample, same order)."""

    samples: list[Sample]
    tensors: list[np.ndarray]
    digest: str
    root: Path
    asked: int | None = None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def batches(self, batch_size: int = 8):
        """Stacked batches of equal-shaped tensors, in order (whole-image models may vary in size)."""
        i = 0
        while i < len(self.tensors):
            shape = self.tensors[i].shape
            j = i
            while j < len(self.tensors) and j - i < batch_size and self.tensors[j].shape == shape:
                j += 1
            yield np.stack(self.tensors[i:j])
            i = j

    def summary(self) -> dict:
        by = defaultdict(int)
        for s in self.samples:
            by[(s.generator or "(top)", {0: "real", 1: "fake"}.get(s.label, "unlabelled"))] += 1
        gens: dict = {}
        for (g, c), n in sorted(by.items()):
            gens.setdefault(g, {})[c] = n
        return {
            "root": str(self.root),
            "asked": self.asked,
            "used": len(self.tensors),
            "skipped": len(self.skipped),
            "digest": self.digest,
            "strata": gens,
        }


def index_any(root: str | Path, require_both: bool) -> list[Sample]:
    """Labelled class folders (0_real/, 1_fake/ under optional generator folders) or a CSV;
    for calibration (require_both False) a plain folder of images is accepted, unlabelled."""
    root = Path(root)
    try:
        return index_dataset(root, require_both=require_both)
    except DataError:
        if require_both or not root.is_dir():
            raise
        files = expand_paths([root])
        if not files:
            raise DataError(f"{root}: no images found (expected image files, or 0_real/ and 1_fake/ folders)") from None
        return [Sample(p, UNLABELLED, "", p.relative_to(root).with_suffix("").as_posix()) for p in files]


def _round_robin(strata: list[list[Sample]], n: int) -> list[Sample]:
    out: list[Sample] = []
    pos = [0] * len(strata)
    while len(out) < n and any(p < len(s) for p, s in zip(pos, strata)):
        for k, s in enumerate(strata):
            if len(out) >= n:
                break
            if pos[k] < len(s):
                out.append(s[pos[k]])
                pos[k] += 1
    return out


def select_samples(samples: list[Sample], n: int | None, seed: int) -> list[Sample]:
    """Up to n samples: classes balanced where possible, generator folders taken in turn
    within a class, each stratum shuffled with `seed`. The same inputs give the same list."""
    samples = sorted(samples, key=lambda s: (s.label, s.generator, s.path.as_posix()))
    if n is None or n >= len(samples):
        return samples
    rng = np.random.default_rng(seed)
    by_class: dict[int, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        by_class[s.label][s.generator].append(s)
    strata_of: dict[int, list[list[Sample]]] = {}
    for label in sorted(by_class):
        strata = []
        for gen in sorted(by_class[label]):
            items = by_class[label][gen]
            order = rng.permutation(len(items))
            strata.append([items[i] for i in order])
        strata_of[label] = strata
    labels = sorted(strata_of)
    avail = {lab: sum(len(s) for s in strata_of[lab]) for lab in labels}
    # equal quotas per class; a class that runs short hands its remainder to the others
    quota = {lab: 0 for lab in labels}
    left = n
    while left > 0:
        open_ = [lab for lab in labels if quota[lab] < avail[lab]]
        if not open_:
            break
        share = max(1, left // len(open_))
        for lab in open_:
            take = min(share, avail[lab] - quota[lab], left)
            quota[lab] += take
            left -= take
            if left == 0:
                break
    chosen = []
    for lab in labels:
        chosen.extend(_round_robin(strata_of[lab], quota[lab]))
    return chosen


def load_set(
    root: str | Path,
    spec: InputSpec,
    n: int | None,
    seed: int,
    require_both: bool,
    purpose: str = "calibration",
    progress: bool = True,
) -> TensorSet:
    """Index, select and preprocess. Raises DataError before any model work when nothing
    usable is left (or one class only where two are needed); warns when fewer than asked."""
    root = Path(root)
    samples = index_any(root, require_both)
    chosen = select_samples(samples, n, seed)
    if n is not None and len(chosen) < n:
        log.warning("%s data %s has %d images, fewer than the %d asked; using all of them", purpose, root, len(chosen), n)
    tensors, kept, skipped = [], [], []
    for s in progress_bar(chosen, progress, desc=f"reading {purpose} images", unit="img"):
        try:
            tensors.append(preprocess(s.path, spec))
            kept.append(s)
        except ImageError as e:
            log.warning("skipping %s image: %s", purpose, e)
            skipped.append(str(e))
    if not kept:
        raise DataError(f"{root}: none of the {len(chosen)} {purpose} images could be read ({skipped[0] if skipped else ''})")
    if require_both and {s.label for s in kept} != {0, 1}:
        raise DataError(f"{root}: after skipping unreadable images only one class is left; the accuracy guard needs real and fake")
    return TensorSet(kept, tensors, digest(kept, root), root, n, skipped)
