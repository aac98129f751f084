"""The local engine: decoding in a pool of worker processes, scoring with one Detector in
this process, decode running ahead of inference by a bounded number of tasks (so memory
follows the number of workers, not the size of the archive)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor

from .decode import prepare_many
from .rows import ModelIdentity, score_prepared

PATHS_PER_TASK = 8
TASKS_AHEAD_PER_WORKER = 4
PARENT_CHECK_SECONDS = 0.5


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
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))
    for f in [pool.submit(_ready) for _ in range(workers)]:
        f.result()
    return pool


def _ready() -> bool:
    return True


def _exit_with_parent(parent: int) -> None:
    """In a decode worker: exit when the scan is gone. A scan killed with SIGKILL runs no
    cleanup, and a forked worker holds both ends of its task pipe, so it would wait forever."""

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="fakedet-scan-parent-watch", daemon=True).start()


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
