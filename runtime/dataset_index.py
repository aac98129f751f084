"""Labelled image lists: folder trees (`0_real/`, `1_fake/`, nested generator folders)
and CSV lists. Pure pathlib: training, evaluation and calibration share it."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fakedet.errors import DataError

from .imageio import is_image_file, walk

REAL_DIRS = {"0_real": 0, "real": 0}
FAKE_DIRS = {"1_fake": 1, "fake": 1}
CLASS_DIRS = {**REAL_DIRS, **FAKE_DIRS}
LABEL_WORDS = {"0": 0, "1": 1, "real": 0, "fake": 1}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 real, 1 fake
    generator: str  # folder path above the class folder ("" at the top), or CSV column
    key: str = ""  # path inside the class folder without suffix: pairs a real image with its reconstruction
    caption: str | None = None  # a CSV's 'caption' column (caption-aware models); None: no caption given

    def __post_init__(self):
        if not self.key:  # no key given: the file name without suffix
            object.__setattr__(self, "key", self.path.stem)


def _from_folder(root: Path) -> list[Sample]:
    samples = []
    class_dirs = sorted(d for d in walk(root) if d.name.lower() in CLASS_DIRS and d.is_dir())
    if root.name.lower() in CLASS_DIRS:
        class_dirs.insert(0, root)
    for cdir in class_dirs:
        # a class folder nested inside another class folder is not a class folder
        if any(p.name.lower() in CLASS_DIRS for p in cdir.relative_to(root).parents if str(p) != "."):
            continue
        label = CLASS_DIRS[cdir.name.lower()]
        gen = cdir.parent.relative_to(root).as_posix() if cdir != root else ""
        gen = "" if gen == "." else gen
        files = sorted(p for p in walk(cdir) if is_image_file(p) and p.is_file())
        if not files:
            raise DataError(f"{cdir}: class folder holds no images")
        samples.extend(Sample(p, label, gen, p.relative_to(cdir).with_suffix("").as_posix()) for p in files)
    if not samples:
        raise DataError(
            f"{root}: no class folders found (expected 0_real/ and 1_fake/, possibly under generator folders)"
        )
    return samples


def _from_csv(path: Path) -> list[Sample]:
    samples = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"path", "label"} <= cols:
            raise DataError(f"{path}: CSV needs columns 'path' and 'label' (optional 'generator', 'caption'); "
                            f"found {sorted(cols)}")
        has_caption = "caption" in cols
        for n, row in enumerate(reader, start=2):
            lab = str(row["label"]).strip().lower()
            if lab not in LABEL_WORDS:
                raise DataError(f"{path}:{n}: label '{row['label']}' is not one of 0, 1, real, fake")
            p = Path(row["path"])
            if not p.is_absolute():
                p = path.parent / p
            caption = (row.get("caption") or "") if has_caption else None
            samples.append(Sample(p, LABEL_WORDS[lab], (row.get("generator") or "").strip(), p.stem, caption))
    if not samples:
        raise DataError(f"{path}: CSV lists no images")
    return samples


def index_dataset(source: str | Path, require_both: bool = True) -> list[Sample]:
    """All labelled images under a folder tree, or listed in a CSV file.

    Raises DataError before any work if the source is empty, a class folder is
    empty, or (with require_both) only one class is present."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such file or directory")
    samples = _from_csv(source) if source.is_file() else _from_folder(source)
    if require_both:
        have = {s.label for s in samples}
        if have != {0, 1}:
            only = "real" if have == {0} else "fake"
            raise DataError(f"{source}: only {only} images found; both real (0_real) and fake (1_fake) are needed")
    return samples


def summarize(samples: list[Sample]) -> dict:
    by = Counter((s.generator, s.label) for s in samples)
    gens = sorted({g for g, _ in by})
    return {
        "images": len(samples),
        "real": sum(1 for s in samples if s.label == 0),
        "fake": sum(1 for s in samples if s.label == 1),
        "generators": {g or "(top)": {"real": by[(g, 0)], "fake": by[(g, 1)]} for g in gens},
    }


def digest(samples: list[Sample], root: Path | None = None, content: bool = True) -> str:
    """sha256 over (relative path, label, generator[, file bytes]) in order: names
    the exact data a calibration or training run saw."""
    h = hashlib.sha256()
    for s in samples:
        rel = s.path.relative_to(root).as_posix() if root and s.path.is_relative_to(root) else s.path.as_posix()
        h.update(f"{rel}\0{s.label}\0{s.generator}\n".encode())
        if s.caption is not None:  # captions are data to a caption-aware model (digests of other rows unchanged)
            h.update(f"caption\0{s.caption}\n".encode())
        if content:
            try:
                h.update(hashlib.sha256(s.path.read_bytes()).digest())
            except OSError:
                h.update(b"<unreadable>")
    return h.hexdigest()
