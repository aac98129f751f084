"""The local engine: decoding in a pool of worker processes, scoring with one Detector in
this process, decode running ahead of inference by a bounded number of tasks (so memory
follows the number of workers, not the size of the archive)."""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor

from .decode import prepare_many
from .rows import ModelIdentity, score_prepared

PATHS_PER_TASK = 8
TASKS_AHEAD_PER_WORKER = 4


def _chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def decode_pool(workers: int) -> ProcessPoolExecutor | None:
    """The decode workers, started now: call it before the Detector opens, so they are forked
    from a process that runs no ONNX Runtime threads yet (fork is cheap: the runtime's modules
    are already imported) and are ready when the first images are. None for workers=0."""
    if workers <= 0:
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
    for f in [pool.submit(_ready) for _ in range(workers)]:
        f.result()
    return pool


def _ready() -> bool:
    return True


def prepared_stream(paths: list[str], input_spec, pool: ProcessPoolExecutor | None, workers: int):
    """decode.Prepared per path, in order; without a pool, decoded in this process."""
    chunks = _chunks(paths, PATHS_PER_TASK)
    if pool is None:
        for chunk in chunks:
            yield from prepare_many(chunk, input_spec)
        return
    pending: deque = deque()
    limit = max(1, workers) * TASKS_AHEAD_PER_WORKER
    try:
        for chunk in chunks:
            pending.append(pool.submit(prepare_many, chunk, input_spec))
            if len(pending) >= limit:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()


def scan_local(paths: list[str], detector, identity: ModelIdentity, emit, batch_size: int,
               pool: ProcessPoolExecutor | None, workers: int) -> None:
    """Score `paths`; `emit(rows)` receives each batch's rows in order."""
    batch: list = []
    for p in prepared_stream(paths, detector.manifest.input, pool, workers):
        batch.append(p)
        if len(batch) >= batch_size:
            emit(score_prepared(detector, batch, identity))
            batch = []
    if batch:
        emit(score_prepared(detector, batch, identity))
