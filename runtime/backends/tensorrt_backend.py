"""Native TensorRT backend: a package's plan, deserialized and run with async copies.

Per concurrent slot: one engine + one execution context + one CUDA stream + pinned host
and device buffers sized for the largest profile. Slots live in a small pool so several
threads can infer at once. Each slot deserializes its own engine: older TensorRT lets a
dynamic-shape profile serve only one context at a time, and this is what `trtexec
--streams` does too (cost: weights once per slot; keep `contexts` small on a Jetson).

TensorRT 8.5+/10/11 use the tensor-name API (set_input_shape / set_tensor_address /
execute_async_v3); older engines without it fall back to binding indices and
execute_async_v2. Shape, profile and buffer arithmetic lives in tensorrt_shapes (pure).

Batches are split and padded to the profiles' batch ranges by the base class; a run here
picks the profile for its shape. Options: see TensorRTBackend.OPTIONS.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedet.errors import BackendError, BackendUnavailable, PackageError

from .. import tensorrt_support as ts
from . import tensorrt_shapes as trt_shapes
from .base import Backend, TensorSpec
from .batching import Range


@dataclass
class _IO:
    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple  # engine shape, -1 for dynamic axes
    index: int = -1  # binding index (legacy API), profile 0


@dataclass
class _Slot:
    engine: object
    context: object
    stream: object
    host: dict = field(default_factory=dict)  # name -> pinned flat array
    device: dict = field(default_factory=dict)  # name -> DeviceBuffer
    profile: int = -1
    graphs: dict = field(default_factory=dict)  # (profile, shape) -> graph exec
    events: list = field(default_factory=list)


def _np_dtype(trt, dt, tensor: str, plan) -> np.dtype:
    """numpy's dtype for a plan's I/O tensor. A type numpy lacks (bf16, fp8) is refused
    with the reason, not read as float32: the bytes would be misread silently."""
    try:
        return np.dtype(trt.nptype(dt))
    except Exception:
        raise PackageError(plan, f"I/O tensor '{tensor}' is {dt}, which numpy cannot hold; "
                                 "export the model with float32 or float16 inputs and outputs") from None


class TensorRTBackend(Backend):
    name = "tensorrt"
    OPTIONS = {
        "contexts": "execution contexts in the pool (concurrent calls; default 1)",
        "cuda_graph": "capture each fixed batch shape once and replay it as a CUDA graph (cuda-python only)",
        "cuda": "CUDA binding: cuda-python or pycuda (default: whichever is installed)",
        "version_compatible": "allow the lean runtime embedded in a version-compatible plan",
        "api": "force an API generation: tensor or bindings (default per tensorrt_support.io_api)",
    }

    @classmethod
    def package_inputs(cls, pkg, choice) -> tuple[object, dict]:
        path, opts = super().package_inputs(pkg, choice)
        opts["version_compatible"] = bool(choice.artifact.attrs.get("version_compatible", False))
        return path, opts

    # ---- loading ---------------------------------------------------------
    def _open(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendUnavailable("tensorrt: TensorRT is not installed here (pip install 'fakedet[trt]')") from None
        from ..cuda_api import load_cuda

        self.trt = trt
        self.cuda = load_cuda(self.options.get("cuda"))
        self.logger = trt.Logger(trt.Logger.WARNING)
        plan = Path(self.model_path).read_bytes()  # each slot deserializes its own engine from it; not kept
        self.tensor_api = None
        self._runtimes = []
        self.slots: list[_Slot] = []  # filled one by one, so _close frees a partial open too
        for _ in range(max(1, int(self.options.get("contexts", 1)))):
            self._make_slot(plan)
        self.pool: queue.Queue = queue.Queue()
        for s in self.slots:
            self.pool.put(s)

    def _deserialize(self, plan: bytes):
        trt = self.trt
        runtime = trt.Runtime(self.logger)
        if self.options.get("version_compatible"):
            runtime.engine_host_code_allowed = True  # the plan embeds a lean runtime
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise PackageError(
                self.model_path,
                "TensorRT could not deserialize this plan (built for another TensorRT version or GPU?); "
                "rebuild it here with fakedet build",
            )
        self._runtimes.append(runtime)  # a runtime must outlive its engines
        return engine

    def _describe_io(self, engine) -> list[_IO]:
        trt = self.trt
        if self.tensor_api is None:
            api = ts.io_api(trt.__version__, hasattr(engine, "num_io_tensors"), self.options.get("api"))
            self.tensor_api = api == "tensor"
        if self.tensor_api:
            out = []
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                is_in = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                out.append(_IO(name, is_in, _np_dtype(trt, engine.get_tensor_dtype(name), name, self.model_path),
                               tuple(engine.get_tensor_shape(name)), i))
            return out
        per_profile = engine.num_bindings // max(engine.num_optimization_profiles, 1)
        return [
            _IO(engine.get_binding_name(i), engine.binding_is_input(i),
                _np_dtype(trt, engine.get_binding_dtype(i), engine.get_binding_name(i), self.model_path),
                tuple(engine.get_binding_shape(i)), i)
            for i in range(per_profile)
        ]

    def _profile_shapes(self, engine, io: _IO) -> list[tuple]:
        shapes = []
        for p in range(max(engine.num_optimization_profiles, 1)):
            if self.tensor_api:
                lo, opt, hi = engine.get_tensor_profile_shape(io.name, p)
            else:
                lo, opt, hi = engine.get_profile_shape(p, io.index)
            shapes.append((tuple(lo), tuple(opt), tuple(hi)))
        return shapes

    def _make_slot(self, plan: bytes) -> None:
        engine = self._deserialize(plan)
        ios = self._describe_io(engine)
        if not hasattr(self, "ios"):
            self.ios = ios
            inputs = [io for io in ios if io.is_input]
            if len(inputs) != 1:
                raise PackageError(self.model_path, f"the plan has {len(inputs)} inputs "
                                   f"({', '.join(io.name for io in inputs)}); the native TensorRT backend runs "
                                   "one-input models: run a caption-aware package with --backend ort-trt")
            self.inp = inputs[0]
            self.outs = [io for io in ios if not io.is_input]
            if -1 in self.inp.shape:
                self.profiles = self._profile_shapes(engine, self.inp)
            else:
                self.profiles = [(self.inp.shape,) * 3]
            self.max_batch = trt_shapes.max_profile_batch(self.profiles)
        ctx = engine.create_execution_context()
        if ctx is None:
            raise BackendError("tensorrt: could not create an execution context (out of GPU memory?)")
        slot = _Slot(engine, ctx, self.cuda.stream())
        self.slots.append(slot)
        in_max = trt_shapes.max_shape_over_profiles([p[2] for p in self.profiles])
        # Size every buffer once for the largest input; outputs from the context's shapes at that input.
        self._set_shape(slot, trt_shapes.profile_for_batch(self.profiles, in_max[0]) or 0, in_max)
        for io in self.ios:
            shape = in_max if io.is_input else self._context_shape(slot, io)
            nbytes = trt_shapes.buffer_nbytes(shape, io.dtype.itemsize)
            slot.host[io.name] = self.cuda.pinned((nbytes // io.dtype.itemsize,), io.dtype)
            slot.device[io.name] = self.cuda.alloc(nbytes)
            if self.tensor_api:
                ctx.set_tensor_address(io.name, slot.device[io.name].ptr)
        slot.events = [self.cuda.event() for _ in range(4)]

    # ---- shapes ----------------------------------------------------------
    def _binding(self, io: _IO, profile: int) -> int:
        return profile * len(self.ios) + io.index

    def _set_shape(self, slot: _Slot, profile: int, shape: tuple) -> None:
        ctx = slot.context
        if profile != slot.profile and len(self.profiles) > 1:
            if hasattr(ctx, "set_optimization_profile_async"):
                ctx.set_optimization_profile_async(profile, self.cuda.stream_handle(slot.stream))
            else:
                ctx.active_optimization_profile = profile
        slot.profile = profile
        if self.tensor_api:
            ctx.set_input_shape(self.inp.name, shape)
        else:
            ctx.set_binding_shape(self._binding(self.inp, profile), shape)

    def _context_shape(self, slot: _Slot, io: _IO) -> tuple:
        if self.tensor_api:
            return tuple(slot.context.get_tensor_shape(io.name))
        return tuple(slot.context.get_binding_shape(self._binding(io, max(slot.profile, 0))))

    # ---- running ---------------------------------------------------------
    def _enqueue(self, slot: _Slot) -> None:
        handle = self.cuda.stream_handle(slot.stream)
        if self.tensor_api:
            ok = slot.context.execute_async_v3(handle)
        else:
            bindings = [0] * (len(self.ios) * max(len(self.profiles), 1))
            for io in self.ios:
                bindings[self._binding(io, slot.profile)] = slot.device[io.name].ptr
            ok = slot.context.execute_async_v2(bindings, handle)
        if not ok:
            raise BackendError("tensorrt: execution failed (see the TensorRT log above)")

    def _batch_ranges(self, sample_shape: tuple) -> list[Range]:
        """The batch ranges of the profiles that take this sample shape (whole-image
        models: height and width are dynamic too)."""
        ranges = [(lo[0], hi[0]) for lo, _, hi in self.profiles
                  if all(lo[a] <= d <= hi[a] for a, d in enumerate(sample_shape, start=1))]
        if not ranges:
            spans = "; ".join(f"{list(lo)}..{list(hi)}" for lo, _, hi in self.profiles)
            raise BackendError(f"tensorrt: input of shape [N, {', '.join(map(str, sample_shape))}] is outside "
                               f"every optimization profile of the plan ({spans})")
        return ranges

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, dict]:
        """(outputs, {h2d, compute, d2h} in ms, from CUDA events on the slot's stream)."""
        slot = self.pool.get()
        try:
            return self._run_on(slot, batch)
        finally:
            self.pool.put(slot)

    def _run_on(self, slot: _Slot, chunk: np.ndarray) -> tuple[np.ndarray, dict]:
        cuda, b = self.cuda, chunk.shape[0]
        profile = trt_shapes.profile_for_batch(self.profiles, b, chunk.shape[1:])  # one exists: _batch_ranges
        shape = trt_shapes.concrete_shape(self.inp.shape, b, chunk.shape[1:])
        shape_changed = (profile, shape) != getattr(slot, "_last", None)
        if shape_changed:
            self._set_shape(slot, profile, shape)
            slot._last = (profile, shape)
        host_in = slot.host[self.inp.name][: int(np.prod(shape))]
        host_in[:] = chunk.astype(self.inp.dtype, copy=False).ravel()
        e0, e1, e2, e3 = slot.events
        s = slot.stream
        cuda.record(e0, s)
        cuda.h2d_async(slot.device[self.inp.name].ptr, host_in, s)
        cuda.record(e1, s)
        self._execute(slot, profile, shape, shape_changed)
        cuda.record(e2, s)
        out = self.outs[0]
        out_shape = self._context_shape(slot, out)
        host_out = slot.host[out.name][: int(np.prod(out_shape))]
        cuda.d2h_async(host_out, slot.device[out.name].ptr, s)
        cuda.record(e3, s)
        cuda.sync(s)
        timing = {"h2d": cuda.elapsed_ms(e0, e1), "compute": cuda.elapsed_ms(e1, e2), "d2h": cuda.elapsed_ms(e2, e3)}
        return host_out.reshape(out_shape).copy(), timing  # a copy: the pinned buffer is reused

    @property
    def uses_cuda_graphs(self) -> bool:
        """Asked for, and possible: stream capture needs cuda-python and the tensor-name API."""
        return bool(self.options.get("cuda_graph")) and getattr(self.cuda, "supports_graphs", False) and bool(self.tensor_api)

    def _execute(self, slot: _Slot, profile: int, shape: tuple, shape_changed: bool) -> None:
        use_graph = self.uses_cuda_graphs
        key = (profile, shape)
        if use_graph and key in slot.graphs:
            self.cuda.launch(slot.graphs[key], slot.stream)
            return
        self._enqueue(slot)
        if use_graph and not shape_changed:
            # Capture after one ordinary run at this shape (TensorRT needs it to settle shapes).
            self.cuda.sync(slot.stream)
            self.cuda.begin_capture(slot.stream)
            self._enqueue(slot)
            slot.graphs[key] = self.cuda.end_capture(slot.stream)

    # ---- specs and cleanup ------------------------------------------------
    def _input_spec(self) -> TensorSpec:
        shape = tuple(None if d == -1 else int(d) for d in self.inp.shape)
        return TensorSpec(self.inp.name, shape, self.inp.dtype.name)

    def _output_spec(self) -> TensorSpec:
        out = self.outs[0]
        return TensorSpec(out.name, tuple(None if d == -1 else int(d) for d in out.shape), out.dtype.name)

    def _close(self) -> None:
        cuda = getattr(self, "cuda", None)
        if cuda is None:  # the open failed before CUDA was set up
            return
        for slot in getattr(self, "slots", []):
            for g in slot.graphs.values():
                cuda.destroy_graph(g)
            for buf in slot.device.values():
                buf.free()
            cuda.destroy_stream(slot.stream)
        self.slots = []
        self.cuda = None
        cuda.close()

    def describe(self) -> str:
        if not self.is_open:
            return "tensorrt"
        return (f"tensorrt {self.trt.__version__} via {self.cuda.name} "
                f"({len(self.slots)} context(s), batch <= {self.max_batch}"
                f"{', CUDA graphs' if self.uses_cuda_graphs else ''}"
                f"{' (CUDA graphs asked for, not possible with ' + self.cuda.name + ')' if self.options.get('cuda_graph') and not self.uses_cuda_graphs else ''})")
