"""The local engine: decoding in a pool of worker processes, scoring with one Detector in
this process, decode running ahead of inference by a bounded number of tasks."""

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


def prepared_stream(paths: list[str], input_spec, workers: int):
    """decode.Prepared per path, in order. workers=0 decodes in this process."""
    if workers <= 0:
        for chunk in _chunks(paths, PATHS_PER_TASK):
            yield from prepare_many(chunk, input_spec)
        return
    # spawn: the parent may already run ONNX Runtime's threads, which fork would copy half-held
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        pending: deque = deque()
        chunks = _chunks(paths, PATHS_PER_TASK)
        limit = workers * TASKS_AHEAD_PER_WORKER
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


def scan_local(paths: list[str], detector, identity: ModelIdentity, emit, batch_size: int, workers: int) -> None:
    """Score `paths`; `emit(rows)` receives each batch's rows in order."""
    batch: list = []
    for p in prepared_stream(paths, detector.manifest.input, workers):
        batch.append(p)
        if len(batch) >= batch_size:
            emit(score_prepared(detector, batch, identity))
            batch = []
    if batch:
        emit(score_prepared(detector, batch, identity))
