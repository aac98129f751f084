"""Aligned datasets: each real image reconstructed through a latent-diffusion autoencoder.

x in [0,1] -> x*2-1 -> encode -> posterior sample (per-image seed) or mean -> decode
-> (y/2+0.5).clamp(0,1) -> 8-bit PNG, at the source's native size.

Layout (`plan_jobs`): `--src` is either a plain folder of real images, or a dataset
tree whose real images sit in `0_real/` (or `real/`) class folders, optionally under
generator folders. Only real images are read. For a real image at
`SRC/[G/]0_real/REL.EXT` (plain folder: `SRC/REL.EXT`) the reconstruction is written to
`DST/[G/]1_fake/REL.png`, and the real image is copied (or hard-linked) byte for byte to
`DST/[G/]0_real/REL.EXT`, so DST is a training dataset by itself, paired by REL.

Sides that are not a multiple of the autoencoder's downsampling factor
(2 ** (len(block_out_channels) - 1)) are reflect-padded on the bottom/right up to the
next multiple, reconstructed, and cropped back to the source size.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fakedet.atomic import atomic_write_bytes, atomic_write_text
from fakedet.errors import DataError, ImageError, first_line
from fakedet.runtime.dataset_index import CLASS_DIRS, REAL_DIRS, index_dataset
from fakedet.runtime.imageio import expand_paths, load_image, walk

from .autoencoder import Autoencoder, reconstruct

log = logging.getLogger("fakedet.align")

_EXIF_ORIENTATION = 0x0112


# ---------------------------------------------------------------- jobs ----
@dataclass(frozen=True)
class Job:
    src: Path  # the real image
    rel: str  # DST-relative path of the reconstruction (`[G/]1_fake/REL.png`)
    real_rel: str  # DST-relative path of the real image's copy (`[G/]0_real/REL.EXT`)


def _has_class_folders(src: Path) -> bool:
    if src.name.lower() in CLASS_DIRS:
        return False  # `data/0_real` itself: a plain folder of reals
    return any(d.name.lower() in REAL_DIRS and d.is_dir() for d in walk(src))


def plan_jobs(src: str | os.PathLike) -> list[Job]:
    """All real images under `src` with the paths their reconstruction and copy get in DST."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: --src must be a folder of images")
    jobs = []
    if _has_class_folders(src):
        for s in index_dataset(src, require_both=False):
            if s.label != 0:
                continue
            gen = Path(s.generator) if s.generator else Path()
            class_dir = src / gen / s.path.relative_to(src / gen).parts[0]
            inner = s.path.relative_to(class_dir)
            jobs.append(Job(s.path, (gen / "1_fake" / inner).with_suffix(".png").as_posix(),
                            (gen / "0_real" / inner).as_posix()))
    else:
        for p in expand_paths([src]):
            inner = p.relative_to(src)
            jobs.append(Job(p, (Path("1_fake") / inner).with_suffix(".png").as_posix(),
                            (Path("0_real") / inner).as_posix()))
    if not jobs:
        raise DataError(f"{src}: no real images found (a folder of images, or 0_real/ class folders)")
    seen: dict[str, Path] = {}
    for j in jobs:
        if j.rel in seen:
            raise DataError(f"{j.src} and {seen[j.rel]} would both be reconstructed to {j.rel}; rename one")
        seen[j.rel] = j.src
    return jobs


def check_dst(src: Path, dst: Path) -> None:
    """DST inside SRC would feed the outputs back in as real images on the next run."""
    s, d = Path(src).resolve(), Path(dst).resolve()
    if d == s or d.is_relative_to(s):
        raise DataError(f"--dst {dst} lies inside --src {src}; choose an output folder outside the source")


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' (0 <= I < N) -> (I, N); None -> from torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if text is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise DataError(f"--shard '{text}' must look like I/N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise DataError(f"--shard '{text}': need 0 <= I < N")
    return i, n


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def in_shard(job: Job, index: int, count: int) -> bool:
    """Hash of the output path: stable when images are added, independent of listing order."""
    return count == 1 or _stable_hash(job.rel) % count == index


def image_seed(seed: int, rel: str) -> int:
    """Per-image noise seed: the same image gets the same posterior sample in any batch, shard or order."""
    return _stable_hash(f"{seed}\0{rel}") & ((1 << 63) - 1)


# -------------------------------------------------------- verification ----
def source_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header (what load_image will produce)."""
    with Image.open(path) as im:
        w, h = im.size
        try:
            orient = im.getexif().get(_EXIF_ORIENTATION, 1)
        except Exception:
            orient = 1
    return (h, w) if orient in (5, 6, 7, 8) else (w, h)


def output_ok(out: Path, size: tuple[int, int]) -> bool:
    """An existing reconstruction is kept if it decodes fully and has the source's size."""
    try:
        with Image.open(out) as im:
            if im.size != size or im.format != "PNG":
                return False
            im.load()
        return True
    except Exception:
        return False


def remove_stale_temporaries(jobs: list[Job], dst: Path) -> int:
    """Delete the hidden temporaries (`.NAME.*.tmp`, `.NAME.*.link`) that a killed run left beside
    this shard's outputs. Only this shard's: another shard may be writing beside them right now."""
    mine: dict[Path, set[str]] = {}
    for j in jobs:
        for rel in (j.rel, j.real_rel):
            p = dst / rel
            mine.setdefault(p.parent, set()).add(p.name)
    removed = 0
    for folder, names in mine.items():
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*"):
            target, _, rest = tmp.name[1:].rpartition(".")
            target = target.rsplit(".", 1)[0]  # .NAME.RANDOM.tmp / .NAME.PID.link
            if rest in ("tmp", "link") and target in names and tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed


def place_real(job: Job, dst: Path, how: str) -> None:
    """Copy (or hard-link) the real image byte for byte into DST, unless an equal-size copy is there."""
    if how == "none":
        return
    target = dst / job.real_rel
    if target.exists() and target.stat().st_size == job.src.stat().st_size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if how == "link":
        tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
        try:
            os.link(job.src, tmp)
            os.replace(tmp, target)
            return
        except OSError:
            tmp.unlink(missing_ok=True)  # other filesystem: fall back to a copy
    atomic_write_bytes(target, job.src.read_bytes())


def png_bytes(arr: np.ndarray, compress_level: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


# ------------------------------------------------------------- the run ----
@dataclass
class AlignSummary:
    done: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)  # [{"path", "error"}]
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "done": self.done,
            "skipped": self.skipped,
            "failed_count": len(self.failed),
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.done / self.seconds, 4) if self.seconds > 0 else None,
            **self.extra,
        }


def summary_name(shard: tuple[int, int]) -> str:
    i, n = shard
    return "align_summary.json" if n == 1 else f"align_summary.shard-{i}-of-{n}.json"


def run_align(
    ae: Autoencoder,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    mode: str = "sample",
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    batch: int = 4,
    reals: str = "copy",
    limit: int | None = None,
    progress: bool = True,
    planned: list[Job] | None = None,
) -> AlignSummary:
    """Reconstruct every real image of this shard that has no valid output yet.

    `planned`: plan_jobs(src) from a caller that has also run check_dst(src, dst);
    both are done here when it is None."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    if planned is None:
        check_dst(src, dst)
        planned = plan_jobs(src)
    jobs = [j for j in planned if in_shard(j, *shard)]
    stale = remove_stale_temporaries(jobs, dst)
    if stale:
        log.info("removed %d temporary file(s) left by an interrupted run", stale)
    summary = AlignSummary()
    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), unit="img", desc=f"align {shard[0]}/{shard[1]}", disable=not progress, dynamic_ncols=True)

    def fail(job: Job, err: str) -> None:
        summary.failed.append({"path": str(job.src), "error": err})
        log.debug("skipped %s: %s", job.src, err)
        bar.write(f"fakedet align: skipped {job.src}: {err}")

    def todo(job: Job):
        """None if the job is already done, else the decoded image (or the error)."""
        try:
            size = source_size(job.src)
        except Exception:
            size = None
        out = dst / job.rel
        if size is not None and out.exists() and output_ok(out, size):
            return None
        try:
            return np.asarray(load_image(job.src))
        except ImageError as e:
            return e

    def write(job: Job, arr: np.ndarray) -> None:
        atomic_write_bytes(dst / job.rel, png_bytes(arr))
        place_real(job, dst, reals)

    remaining = limit
    with ThreadPoolExecutor(max_workers=2) as pool:
        chunks = [jobs[i : i + batch] for i in range(0, len(jobs), batch)]
        load = lambda c: [todo(j) for j in c]  # noqa: E731
        pending = pool.submit(load, chunks[0]) if chunks else None
        writes = []
        for k, chunk in enumerate(chunks):
            if remaining is not None and remaining <= 0:
                break
            loaded = pending.result()  # decode the next chunk while this one runs through the autoencoder
            pending = pool.submit(load, chunks[k + 1]) if k + 1 < len(chunks) else None
            work = []
            for job, item in zip(chunk, loaded):
                if item is None:
                    summary.skipped += 1
                    place_real(job, dst, reals)
                    bar.update(1)
                elif isinstance(item, Exception):
                    fail(job, item.problem if isinstance(item, ImageError) else str(item))
                    bar.update(1)
                elif remaining is None or len(work) < remaining:
                    work.append((job, item))
            by_shape: dict[tuple, list] = {}
            for job, arr in work:
                by_shape.setdefault(arr.shape, []).append((job, arr))
            for group in by_shape.values():
                for job, out in _reconstruct_group(ae, group, seed, mode, fail):
                    writes.append(pool.submit(write, job, out))
                    summary.done += 1
                bar.update(len(group))
            writes = [f for f in writes if not f.done() or f.result()]  # surface write errors early
            if remaining is not None:
                remaining -= len(work)
            summary.seconds = time.perf_counter() - t0
            bar.set_postfix(done=summary.done, skipped=summary.skipped, failed=len(summary.failed))
        for f in writes:
            f.result()
    bar.close()
    summary.seconds = time.perf_counter() - t0
    summary.extra = {
        "src": str(src), "dst": str(dst), "vae": ae.source, "vae_class": ae.class_name, "factor": ae.factor,
        "mode": mode if ae.kind == "kl" else "quantized", "seed": seed, "shard": f"{shard[0]}/{shard[1]}",
        "shard_images": len(jobs), "device": str(ae.model.device), "dtype": str(ae.model.dtype).replace("torch.", ""),
    }
    atomic_write_text(dst / summary_name(shard), json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def _reconstruct_group(ae: Autoencoder, group: list, seed: int, mode: str, fail):
    """A same-shape group in one pass; if that fails, each image alone so one bad image costs only itself."""
    seeds = [image_seed(seed, j.rel) for j, _ in group]
    try:
        outs = reconstruct(ae, [a for _, a in group], seeds, mode)
        return [(j, o) for (j, _), o in zip(group, outs)]
    except Exception as e:
        if len(group) == 1:
            fail(group[0][0], f"reconstruction failed: {first_line(e)}")
            return []
    results = []
    for item in group:
        results.extend(_reconstruct_group(ae, [item], seed, mode, fail))
    return results

