"""The TensorRT backend's shape arithmetic: which optimization profile runs a batch, the
concrete input shape to set, and buffer sizes. Pure (no tensorrt import), so it is
tested without a GPU; splitting a call into runs is batching.plan_runs."""

from __future__ import annotations


def profile_for_batch(profiles: list[tuple[tuple, tuple, tuple]], batch: int, sample_shape: tuple | None = None) -> int | None:
    """Index of the optimization profile whose [min, max] range covers `batch` (and, when
    given, every axis of `sample_shape`, the input without its batch axis: whole-image
    models have dynamic height and width). Among those, the one whose opt batch is
    nearest (ties: the smaller max, then the lower index). `profiles` holds (min, opt,
    max) shapes of the batched input. None if no profile covers it."""
    shape = (batch,) + tuple(sample_shape) if sample_shape is not None else (batch,)
    best = None
    for i, (lo, opt, hi) in enumerate(profiles):
        if all(lo[a] <= shape[a] <= hi[a] for a in range(min(len(shape), len(lo)))):
            key = (abs(opt[0] - batch), hi[0], i)
            if best is None or key < best[0]:
                best = (key, i)
    return None if best is None else best[1]


def max_profile_batch(profiles: list[tuple[tuple, tuple, tuple]]) -> int:
    return max(p[2][0] for p in profiles)


def concrete_shape(engine_shape: tuple, batch: int, sample_shape: tuple) -> tuple:
    """The input shape to set for a run: the batch axis, then the sample's own dims where
    the engine's are dynamic (-1); fixed engine dims must match the sample."""
    shape = [batch]
    for i, (eng, got) in enumerate(zip(engine_shape[1:], sample_shape)):
        if eng not in (-1, None) and int(eng) != int(got):
            raise ValueError(f"input axis {i + 1} is {got}, the plan needs {eng}")
        shape.append(int(got))
    if len(engine_shape) - 1 != len(sample_shape):
        raise ValueError(f"input has {len(sample_shape) + 1} axes, the plan needs {len(engine_shape)}")
    return tuple(shape)


def buffer_nbytes(shape: tuple, itemsize: int) -> int:
    """Bytes for a tensor of `shape` (all dims concrete, >= 0)."""
    n = 1
    for d in shape:
        if d is None or int(d) < 0:
            raise ValueError(f"shape {shape} has a dynamic axis; use the profile's max shape")
        n *= int(d)
    return n * int(itemsize)


def max_shape_over_profiles(shapes: list[tuple]) -> tuple:
    """Elementwise max of several concrete shapes (buffers sized once for every profile)."""
    if not shapes:
        raise ValueError("no shapes")
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise ValueError(f"shapes of different rank: {shapes}")
    return tuple(max(int(s[i]) for s in shapes) for i in range(rank))
