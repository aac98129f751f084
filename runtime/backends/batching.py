"""Fitting any number of images to the batch sizes an engine runs: split, and pad.

An engine runs some batch sizes only: an ONNX model exported with batch 4 runs 4; a
TensorRT plan runs the union of its optimization profiles' [min, max] ranges (1..8,
or 16..32 beside it). `plan_runs` cuts n images into runs the engine takes; a run
smaller than every size the engine takes is padded up (repeating the last image) and
its extra outputs dropped. Pure: no inference library, no numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

from fakedet.errors import BackendError

Range = tuple[int, "int | None"]  # (smallest, largest or None: no upper bound) batch size


@dataclass(frozen=True)
class Run:
    count: int  # images of the caller's batch in this run
    size: int  # the batch size the engine runs (count + padding)

    @property
    def padding(self) -> int:
        return self.size - self.count


def _largest(ranges: list[Range]) -> int | None:
    his = [hi for _, hi in ranges]
    return None if any(hi is None for hi in his) else max(his)


def _check(ranges: list[Range]) -> None:
    if not ranges:
        raise BackendError("the engine takes no batch size at all")
    for lo, hi in ranges:
        if lo < 1 or (hi is not None and hi < lo):
            raise BackendError(f"invalid batch range {lo}..{hi}")


def fits(size: int, ranges: list[Range]) -> bool:
    return any(lo <= size and (hi is None or size <= hi) for lo, hi in ranges)


def plan_runs(n: int, ranges: list[Range]) -> list[Run]:
    """Runs covering n images: as few as possible, each taking the largest size that
    does not exceed what is left; what is left in a gap between ranges (or below the
    smallest) is padded up to the next size the engine takes."""
    _check(ranges)
    if n < 1:
        raise BackendError(f"a batch needs at least one image, got {n}")
    if fits(n, ranges):
        return [Run(n, n)]
    largest = _largest(ranges)
    runs = []
    left = n
    while left:
        if fits(left, ranges):
            runs.append(Run(left, left))
            break
        if largest is not None and left > largest:
            runs.append(Run(largest, largest))
            left -= largest
            continue
        # `left` is below the smallest size or in a gap: the next size up that the engine takes
        up = min(lo for lo, _ in ranges if lo > left)
        runs.append(Run(left, up))
        break
    return runs
