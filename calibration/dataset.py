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
from fakedet.runtime.captions import IMAGE_ONLY, CaptionRefused
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
    """Preprocessed tensors with their samples (one tensor per sample, same order), and the
    model's caption input (runtime.captions: a CaptionInput feeds each sample's caption token
    ids beside the images, IMAGE_ONLY the images alone)."""

    samples: list[Sample]
    tensors: list[np.ndarray]
    digest: str
    root: Path
    asked: int | None = None
    skipped: list[str] = field(default_factory=list)
    captions: object = IMAGE_ONLY  # CaptionInput or IMAGE_ONLY
    caption_rows: list = field(default_factory=list)  # one prepared caption (token ids, or None) per tensor
    image_name: str = "image"
    caption_note: str | None = None  # where the captions came from (caption-aware sets)

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
            yield self.captions.feed(self.image_name, np.stack(self.tensors[i:j]), self.caption_rows[i:j])
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
            **({"captions": self.caption_note} if self.caption_note else {}),
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
    captions=IMAGE_ONLY,
) -> TensorSet:
    """Index, select and preprocess. Raises DataError before any model work when nothing
    usable is left (or one class only where two are needed); warns when fewer than asked.
    `captions` (the package's fakedet.runtime.captions.CaptionInput, or IMAGE_ONLY): each
    sample's caption from the CSV is tokenized and fed beside its image; a sample whose
    caption the package refuses is skipped like an unreadable image."""
    root = Path(root)
    samples = index_any(root, require_both)
    note = _check_captions(root, samples, captions, purpose)
    chosen = select_samples(samples, n, seed)
    if n is not None and len(chosen) < n:
        log.warning("%s data %s has %d images, fewer than the %d asked; using all of them", purpose, root, len(chosen), n)
    tensors, kept, rows, skipped = [], [], [], []
    for s in progress_bar(chosen, progress, desc=f"reading {purpose} images", unit="img"):
        try:
            row = captions.prepare(s.caption)  # checked and tokenized (IMAGE_ONLY: None)
            tensors.append(preprocess(s.path, spec))
            kept.append(s)
            rows.append(row)
            problem = None
        except CaptionRefused as e:
            problem = f"{s.path}: {e}"
        except ImageError as e:
            problem = str(e)
        if problem is not None:
            log.warning("skipping %s image: %s", purpose, problem)
            skipped.append(problem)
    if not kept:
        raise DataError(f"{root}: none of the {len(chosen)} {purpose} images could be read ({skipped[0] if skipped else ''})")
    if require_both and {s.label for s in kept} != {0, 1}:
        raise DataError(f"{root}: after skipping unreadable images only one class is left; the accuracy guard needs real and fake")
    return TensorSet(kept, tensors, digest(kept, root), root, n, skipped, captions, rows, spec.name, note)


def _check_captions(root: Path, samples: list[Sample], captions, purpose: str) -> str | None:
    """How the set's captions are read (for the report; None for an image-only model, which
    reads none); DataError when a caption-aware package would get none and refuses empty ones."""
    if not captions.takes_captions:
        return None
    with_caption = sum(s.caption is not None and bool(s.caption.strip()) for s in samples)
    if with_caption:
        return f"{with_caption} of {len(samples)} samples captioned (the CSV's 'caption' column), tokenized " \
               f"with the package's tokenizer"  # fmt: skip
    where = "a CSV without a 'caption' column" if root.is_file() and not any(s.caption is not None for s in samples) \
        else "a folder of images" if root.is_dir() else "a CSV whose 'caption' column is empty"  # fmt: skip
    if not captions.empty_is_valid:
        raise DataError(f"{root}: the package reads each image with its caption, but this {purpose} set is {where}; "
                        "give a CSV with columns path,label,caption (the package refuses empty captions)")  # fmt: skip
    log.warning("%s data %s has no captions (%s): every image is read with an empty caption, which the package "
                "scores (its empty_caption is 'score')", purpose, root, where)  # fmt: skip
    return f"none ({where}): empty captions, which the package scores (empty_caption 'score')"

