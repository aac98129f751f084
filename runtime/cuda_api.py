"""The few CUDA calls the TensorRT backend needs, over cuda-python (`cuda.bindings`,
what NVIDIA's samples use since TensorRT 10.13) or pycuda (what many Jetson images
ship). Both are imported only when `load_cuda()` is called.

Buffers: `pinned(shape, dtype)` gives a page-locked numpy array (so async copies are
really asynchronous); `alloc(nbytes)` gives a device buffer with an integer `ptr`
that TensorRT takes as a tensor address.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from fakedet.errors import BackendUnavailable, first_line


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: str  # "8.7"
    integrated: bool  # Jetson / DRIVE: GPU shares memory with the CPU


class DeviceBuffer:
    def __init__(self, ptr: int, nbytes: int, free):
        self.ptr, self.nbytes, self._free = int(ptr), int(nbytes), free

    def free(self) -> None:
        if self._free is not None:
            self._free()
            self._free = None


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"  # 12060 -> "12.6"


def insufficient_driver_hint(driver: int, built: int) -> str:
    """Why cudaErrorInsufficientDriver, from cudaDriverGetVersion (0: no driver) and
    cudaRuntimeGetVersion (the CUDA this cuda-python is built for). A cuda-python of a
    newer CUDA major than the driver (13.x on JetPack 6's CUDA 12) never works there."""
    if driver == 0:
        return "no CUDA driver is installed"
    hint = f"driver supports CUDA {_cuda_version(driver)}, this cuda-python is built for {_cuda_version(built)}"
    if driver // 1000 < built // 1000:
        hint += f": pip install 'cuda-python<{driver // 1000 + 1}'"
    return hint


def native_handle(obj) -> int:
    """The address behind a cuda-python handle such as cudaStream_t. cuda-bindings 13
    deprecates int(obj) for this ("subject to future removal"); 12.9 has both ways."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:  # cuda-python before 12.9.1: int() is the way
        return int(obj)
    return int(get_cuda_native_handle(obj))


# ---- cuda-python -----------------------------------------------------------
class CudaPython:
    name = "cuda-python"
    supports_graphs = True

    def __init__(self, device: int = 0):
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        self.rt = cudart
        err = cudart.cudaSetDevice(device)[0]
        if err == cudart.cudaError_t.cudaErrorInsufficientDriver:
            driver = self._check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
            built = self._check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
            raise RuntimeError(f"cudaSetDevice failed: {err.name} ({insufficient_driver_hint(driver, built)})")
        self._check(err, "cudaSetDevice")
        self.device = device

    def _check(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = getattr(err, "name", str(err))
            raise RuntimeError(f"{what} failed: {name}")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    def device_info(self) -> DeviceInfo:
        p = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = p.name.decode(errors="replace").rstrip("\x00") if isinstance(p.name, bytes) else str(p.name)
        return DeviceInfo(name, f"{p.major}.{p.minor}", bool(p.integrated))

    def stream(self):
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    @staticmethod
    def stream_handle(stream) -> int:
        return native_handle(stream)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._check(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc")
        return DeviceBuffer(ptr, nbytes, lambda: self.rt.cudaFree(ptr))

    def pinned(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        ptr = self._check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost")
        raw = (ctypes.c_byte * nbytes).from_address(int(ptr))
        arr = np.frombuffer(raw, dtype=np.uint8, count=nbytes)[: int(np.prod(shape)) * dtype.itemsize]
        arr = arr.view(dtype).reshape(shape)
        self._pinned = getattr(self, "_pinned", [])
        self._pinned.append(int(ptr))
        return arr

    def h2d_async(self, dst: int, host: np.ndarray, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes, kind, stream), "cudaMemcpyAsync H2D")

    def d2h_async(self, host: np.ndarray, src: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes, kind, stream), "cudaMemcpyAsync D2H")

    def sync(self, stream) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def event(self):
        return self._check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record(self, event, stream) -> None:
        self._check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start, end) -> float:
        return float(self._check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def begin_capture(self, stream) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream):
        graph = self._check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        exec_ = self._check(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        self.rt.cudaGraphDestroy(graph)
        return exec_

    def launch(self, graph_exec, stream) -> None:
        self._check(self.rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")

    def destroy_graph(self, graph_exec) -> None:
        self.rt.cudaGraphExecDestroy(graph_exec)

    def destroy_stream(self, stream) -> None:
        self.rt.cudaStreamDestroy(stream)

    def close(self) -> None:
        for ptr in getattr(self, "_pinned", []):
            self.rt.cudaFreeHost(ptr)
        self._pinned = []


# ---- pycuda ---------------------------------------------------------------
class PyCuda:
    name = "pycuda"
    supports_graphs = False  # pycuda has no stream-capture API

    def __init__(self, device: int = 0):
        import pycuda.driver as drv

        drv.init()
        self.drv = drv
        self.dev = drv.Device(device)
        # The primary context is the one the CUDA runtime (and so TensorRT) uses.
        self.ctx = self.dev.retain_primary_context()
        self.ctx.push()
        self._allocs = []

    def device_info(self) -> DeviceInfo:
        major, minor = self.dev.compute_capability()
        integrated = bool(self.dev.get_attribute(self.drv.device_attribute.INTEGRATED))
        return DeviceInfo(self.dev.name(), f"{major}.{minor}", integrated)

    def stream(self):
        return self.drv.Stream()

    @staticmethod
    def stream_handle(stream) -> int:
        return int(stream.handle)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        mem = self.drv.mem_alloc(max(int(nbytes), 1))
        self._allocs.append(mem)
        return DeviceBuffer(int(mem), nbytes, mem.free)

    def pinned(self, shape, dtype) -> np.ndarray:
        return self.drv.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def h2d_async(self, dst: int, host: np.ndarray, stream) -> None:
        self.drv.memcpy_htod_async(dst, host, stream)

    def d2h_async(self, host: np.ndarray, src: int, stream) -> None:
        self.drv.memcpy_dtoh_async(host, src, stream)

    def sync(self, stream) -> None:
        stream.synchronize()

    def event(self):
        return self.drv.Event()

    def record(self, event, stream) -> None:
        event.record(stream)

    def elapsed_ms(self, start, end) -> float:
        return float(end.time_since(start))

    def destroy_stream(self, stream) -> None:
        pass

    def close(self) -> None:
        self._allocs = []
        try:
            self.ctx.pop()
        except Exception:
            pass


def load_cuda(prefer: str | None = None, device: int = 0):
    """A CUDA API object: cuda-python first, pycuda where that is what the device has.
    `prefer` ("cuda-python" or "pycuda") forces one."""
    order = [prefer] if prefer else ["cuda-python", "pycuda"]
    errors = []
    for name in order:
        try:
            return CudaPython(device) if name == "cuda-python" else PyCuda(device)
        except ImportError:
            errors.append(f"{name} not installed")
        except Exception as e:
            errors.append(f"{name}: {first_line(e, 160)}")
    raise BackendUnavailable("; ".join(errors))
