"""The Ray Data engine: the paths become a dataset, decode tasks read and prepare the
images (the runtime's decoder), an actor pool scores them (one Detector per actor), and
the driver writes the rows through the same shard store as the local engine.

Without --address a local Ray runtime starts on 127.0.0.1 (no dashboard) and stops at the
end; with it the scan joins that cluster (and only disconnects). A task or actor that dies
is retried by Ray; its rows reach the driver once (the shard writer drops a path it has
already written), and a shard is written only whole."""

from __future__ import annotations

import os
import shutil

import numpy as np

from fakedet.errors import FakedetError, first_line

from .decode import Prepared, prepare_path
from .package_ship import ship
from .rows import ModelIdentity, schema, score_prepared, to_table

DECODED_FIELDS = ("path", "size", "sha256", "error", "seconds", "tensor", "shape")
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024


def decoded_schema():
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("size", pa.int64()), ("sha256", pa.string()), ("error", pa.string()),
                      ("seconds", pa.float64()), ("tensor", pa.binary()), ("shape", pa.list_(pa.int64()))])


def decode_batch(batch, input_spec):
    """A Ray task: a table of paths -> a table of decoded tensors (raw float32 bytes + shape)."""
    import pyarrow as pa

    rows = []
    for path in batch.column("path").to_pylist():
        p = prepare_path(path, input_spec)
        t = p.tensor
        rows.append({"path": p.path, "size": p.size, "sha256": p.sha256, "error": p.error, "seconds": p.seconds,
                     "tensor": None if t is None else np.ascontiguousarray(t, dtype=np.float32).tobytes(),
                     "shape": None if t is None else list(t.shape)})
    return pa.Table.from_pylist(rows, schema=decoded_schema())


class ScoreBatch:
    """A Ray Data actor: opens the package once (after checking its sha256 here), then
    scores decoded batches into result rows."""

    def __init__(self, shipped, backend: str, precision: str, threads, threshold, batch_size: int):
        from ..detector import Detector

        path, self._tmp = shipped.materialize()
        options = {"threads": threads} if threads else {}
        self.detector = Detector.open(path, backend=backend, precision=precision, batch_size=batch_size,
                                      threshold=threshold, **options)
        self.identity = ModelIdentity.of(self.detector, shipped.sha256)

    def __call__(self, batch):
        prepared = []
        for r in batch.to_pylist():
            tensor = None
            if r["tensor"] is not None:
                tensor = np.frombuffer(r["tensor"], dtype=np.float32).reshape(r["shape"])
            prepared.append(Prepared(path=r["path"], size=r["size"], sha256=r["sha256"], tensor=tensor,
                                     error=r["error"], seconds=r["seconds"]))
        return to_table(score_prepared(self.detector, prepared, self.identity))

    def __del__(self):
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def connect(address: str | None, num_cpus: int | None):
    """Initialise Ray; returns the undo to call at the end when this call started a runtime
    (ray.shutdown and the loopback switch restored), None when Ray was already running."""
    try:
        import ray
    except ImportError:
        raise FakedetError("--engine ray needs Ray Data: pip install 'fakedet[ray]'") from None
    if ray.is_initialized():
        return None
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise FakedetError(
                f"--address {address}: cannot join the Ray cluster ({first_line(e)}); is `ray start --head` "
                "running there? With an explicit address, Ray's token authentication needs RAY_AUTH_MODE=token "
                "(and the cluster's token in ~/.ray/auth_token)") from None
        return ray.shutdown
    restore = _loopback_only()
    try:
        # address="local": a runtime of our own, never a cluster found through RAY_ADDRESS or the
        # address file that `ray start` leaves behind
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    except BaseException:
        restore()
        raise

    def undo():
        try:
            ray.shutdown()
        finally:
            restore()

    return undo


def _loopback_only():
    """On Linux Ray turns 127.0.0.1 into the machine's address and binds its servers to every
    interface; its single-machine mode (the switch below, Ray's default on macOS and Windows)
    keeps the GCS, raylet and workers on 127.0.0.1. The switch is read from the environment by
    the processes Ray starts, and from ray_constants by this one. Returns the undo."""
    import ray._private.ray_constants as constants

    before_env, before_const = os.environ.get(LOOPBACK_SWITCH), constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_SWITCH] = "0"
    constants.ENABLE_RAY_CLUSTER = False

    def restore():
        constants.ENABLE_RAY_CLUSTER = before_const
        if before_env is None:
            os.environ.pop(LOOPBACK_SWITCH, None)
        else:
            os.environ[LOOPBACK_SWITCH] = before_env

    return restore


def build_dataset(opts, shipped, paths: list[str], input_spec):
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the scan draws its own
    blocks = max(1, min(len(paths) // max(1, opts.decode_batch), 10_000)) if len(paths) > opts.decode_batch else 1
    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
    # Decode tasks spread over the nodes; the actors are placed where they fit. The differing
    # scheduling strategies also keep decoding in tasks of its own: Ray Data would otherwise fuse
    # it into the scoring actors, which would then decode only as many images at once as there are actors.
    ds = ds.map_batches(decode_batch, fn_kwargs={"input_spec": input_spec}, batch_size=opts.decode_batch,
                        batch_format="pyarrow", num_cpus=1, scheduling_strategy="SPREAD")
    return ds.map_batches(
        ScoreBatch, batch_size=opts.batch_size, batch_format="pyarrow", num_cpus=1, scheduling_strategy="DEFAULT",
        compute=ray.data.ActorPoolStrategy(size=opts.concurrency),
        fn_constructor_kwargs={"shipped": shipped, "backend": opts.backend, "precision": opts.precision,
                               "threads": opts.threads, "threshold": opts.threshold,
                               "batch_size": opts.batch_size})


def scan_ray(opts, pkg_sha: str, paths: list[str], emit) -> ModelIdentity | None:
    """Score `paths` on Ray Data; `emit(rows)` gets the rows as they come back."""
    from fakedet.package import ModelPackage

    with ModelPackage.open(opts.package) as pkg:
        input_spec = pkg.manifest.input
    undo = connect(opts.address, opts.num_cpus)
    try:
        shipped = ship(opts.package, opts.ship)
        if shipped.sha256 != pkg_sha:
            raise FakedetError(f"{opts.package}: changed during the scan (sha256 differs)")
        identity = None
        for table in build_dataset(opts, shipped, paths, input_spec).iter_batches(batch_size=None,
                                                                                   batch_format="pyarrow"):
            table = table.select(list(schema().names))
            rows = table.to_pylist()
            if rows and identity is None:
                r = rows[0]
                identity = ModelIdentity(r["model"], r["package_sha256"], r["backend"], r["precision"],
                                         r["threshold"])
            emit(rows)
        return identity
    finally:
        if undo is not None:
            undo()
