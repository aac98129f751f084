"""One scan from source to summary: what to score (the source less what the result folder
already holds), the engine, the shard writer, the summary."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fakedet.errors import FakedetError

from ..decode_pool import DEFAULT_DECODE_SECONDS
from .package_ship import package_sha256
from .progress import Progress
from .rows import failure_kind
from .sources import read_source
from .store import ResultStore

ENGINES = ("local", "ray")


@dataclass
class ScanOptions:
    source: Path
    package: Path
    out: Path
    engine: str = "local"
    rescore: bool = False
    batch_size: int = 32
    shard_size: int = 4096
    workers: int | None = None  # local: decode processes (None: one per core); ray: unused
    decode_timeout_s: float = DEFAULT_DECODE_SECONDS  # local: per image, its worker killed past it
    backend: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    threshold: float | None = None
    path_column: str | None = None
    address: str | None = None  # ray: join this cluster; None starts a local one
    concurrency: int = 1  # ray: scoring actors
    decode_batch: int = 64  # ray: images per decode task
    num_cpus: int | None = None  # ray: CPUs of the local runtime started without --address
    ship: str = "auto"  # ray: how the package reaches the workers
    progress: bool = True


class ShardWriter:
    """Buffers rows into shards of `shard_size`; a path already written is never written again."""

    def __init__(self, store: ResultStore, shard_size: int, progress: Progress, already: set[str]):
        self.store, self.shard_size, self.progress = store, max(1, shard_size), progress
        self.seen = set(already)
        self.buffer: list[dict] = []
        self.rows = self.failed = self.duplicates = 0
        self.first_at: float | None = None  # when the first rows came back
        self.first_rows = 0

    def emit(self, rows: list[dict]) -> None:
        if self.first_at is None:
            self.first_at, self.first_rows = time.perf_counter(), len(rows)
        fresh = []
        for r in rows:
            if r["path"] in self.seen:  # a retried task's rows: already written
                self.duplicates += 1
                continue
            self.seen.add(r["path"])
            fresh.append(r)
        failed = sum(r["error"] is not None for r in fresh)
        self.rows += len(fresh)
        self.failed += failed
        self.buffer.extend(fresh)
        while len(self.buffer) >= self.shard_size:
            self.store.write_shard(self.buffer[: self.shard_size])
            del self.buffer[: self.shard_size]
        self.progress.update(len(fresh), failed)

    def flush(self) -> None:
        if self.buffer:
            self.store.write_shard(self.buffer)
            self.buffer = []


def run_scan(opts: ScanOptions) -> dict:
    if opts.engine not in ENGINES:
        raise FakedetError(f"--engine {opts.engine}: expected one of {', '.join(ENGINES)}")
    t_start = time.perf_counter()
    paths = read_source(opts.source, opts.path_column)
    model_name = _model_name(opts.package)  # opening it first: a missing or broken package is its error
    pkg_sha = package_sha256(opts.package)
    store = ResultStore(opts.out, model_name, pkg_sha, rescore=opts.rescore)
    done = store.done_paths()
    pending = [p for p in paths if p not in done]
    progress = Progress(len(pending), enabled=opts.progress)
    writer = ShardWriter(store, opts.shard_size, progress, done)
    t_engine = time.perf_counter()
    if pending:
        if opts.engine == "local":
            identity = _run_local(opts, pkg_sha, pending, writer)
        else:
            from .ray_engine import scan_ray

            identity = scan_ray(opts, pkg_sha, pending, writer.emit)
    else:
        identity = None
    writer.flush()
    progress.close()
    t_end = time.perf_counter()
    summary = summarize(store, opts, paths, len(paths) - len(pending), writer, identity,
                        startup=t_engine - t_start, seconds=t_end - t_engine, t_end=t_end)
    store.write_summary(summary)
    return summary


def _model_name(package) -> str:
    from fakedet.package import ModelPackage

    with ModelPackage.open(package) as pkg:
        if pkg.manifest.takes_captions:
            raise FakedetError(f"{package}: a caption-aware model; scan scores images only "
                               "(use fakedet predict --captions)")
        return pkg.manifest.name


def _run_local(opts: ScanOptions, pkg_sha: str, pending: list[str], writer: ShardWriter):
    from ..detector import Detector
    from .local import scan_local, use_decode_budget
    from .rows import ModelIdentity

    options = {"threads": opts.threads} if opts.threads else {}
    workers = (os.cpu_count() or 1) if opts.workers is None else opts.workers
    with Detector.open(opts.package, backend=opts.backend, precision=opts.precision,
                       batch_size=opts.batch_size, threshold=opts.threshold, **options) as det:
        use_decode_budget(det, workers, opts.decode_timeout_s)
        identity = ModelIdentity.of(det, pkg_sha)
        scan_local(pending, det, identity, writer.emit, opts.batch_size, workers)
    return identity


def summarize(store: ResultStore, opts: ScanOptions, paths: list[str], skipped: int, writer: ShardWriter,
              identity, startup: float, seconds: float, t_end: float) -> dict:
    table = store.table(columns=("decision", "error"))
    errors = [e for e in table.column("error").to_pylist() if e is not None]
    decisions = Counter(d for d in table.column("decision").to_pylist() if d is not None)
    return {
        "source": str(opts.source),
        "out": str(opts.out),
        "engine": opts.engine,
        "model": store.model,
        "package_sha256": store.package_sha256,
        "backend": identity.backend if identity else None,
        "precision": identity.precision if identity else None,
        "threshold": identity.threshold if identity else None,
        "images_in_source": len(paths),
        "skipped_already_done": skipped,
        "this_run": {"rows": writer.rows, "scored": writer.rows - writer.failed, "failed": writer.failed,
                     "duplicate_rows_dropped": writer.duplicates},
        "totals": {"rows": table.num_rows, "scored": table.num_rows - len(errors), "failed": len(errors),
                   "fake": decisions.get("fake", 0), "real": decisions.get("real", 0), "shards": len(store.shards)},
        "failures_by_kind": dict(sorted(Counter(failure_kind(e) for e in errors).items())),
        "startup_seconds": round(startup, 3),
        "seconds": round(seconds, 3),
        "images_per_second": round(writer.rows / seconds, 2) if seconds > 0 and writer.rows else 0.0,
        # the engine's start-up (worker processes, a Ray runtime, actors, model loading) apart:
        "seconds_to_first_rows": round(writer.first_at - (t_end - seconds), 3) if writer.first_at else None,
        "images_per_second_after_first_rows": _after_first(writer, t_end),
    }


def _after_first(writer: ShardWriter, t_end: float) -> float | None:
    if writer.first_at is None or t_end <= writer.first_at or writer.rows <= writer.first_rows:
        return None
    return round((writer.rows - writer.first_rows) / (t_end - writer.first_at), 2)
