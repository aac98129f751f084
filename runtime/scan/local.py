"""The local engine: images decoded by the Detector's budgeted decode workers
(runtime.decode_pool: a decode that outlives `--decode-timeout-s` has its worker killed
and fails its row only), read, hashed and preprocessed by a few threads of this process,
and scored by the one Detector here. Decoding runs ahead of inference by a bounded number
of images, so memory follows the number of workers, not the size of the archive."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ..decode_pool import DEFAULT_DECODE_SECONDS
from .decode import prepare_path
from .rows import ModelIdentity, score_prepared

IMAGES_AHEAD_PER_WORKER = 16


def use_decode_budget(detector, workers: int, seconds: float = DEFAULT_DECODE_SECONDS) -> None:
    """`workers` decode processes for `detector`, started now (0: decode in this process,
    without a time budget)."""
    detector.set_decode_budget(seconds, workers)
    detector.decoder.prestart()


def prepared_stream(paths: list[str], detector, workers: int):
    """decode.Prepared per path, in order; `workers` threads (none for 0) feed the decoder."""

    def one(path):
        return prepare_path(path, detector.manifest.input, lambda data, _name: detector.prepare(data))

    if workers <= 0:
        yield from map(one, paths)
        return
    pending: deque = deque()
    limit = workers * IMAGES_AHEAD_PER_WORKER
    with ThreadPoolExecutor(workers, thread_name_prefix="fakedet-scan-decode") as pool:
        try:
            for path in paths:
                pending.append(pool.submit(one, path))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


def scan_local(paths: list[str], detector, identity: ModelIdentity, emit, batch_size: int, workers: int) -> None:
    """Score `paths`; `emit(rows)` receives each batch's rows in order."""
    batch: list = []
    for p in prepared_stream(paths, detector, workers):
        batch.append(p)
        if len(batch) >= batch_size:
            emit(score_prepared(detector, batch, identity))
            batch = []
    if batch:
        emit(score_prepared(detector, batch, identity))
