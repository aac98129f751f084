"""The thin TensorRT layer of `fakedet build`: NVIDIA's documented builder API for
TensorRT 8.5 - 11. Every decision (which ONNX, which flags, which shapes) is made in
tensorrt_rules; this module only carries it out."""

from __future__ import annotations

import logging
from pathlib import Path

from fakedet.artifact_kinds import TRT_CALIBRATION_CACHE
from fakedet.atomic import atomic_write_bytes
from fakedet.errors import BackendUnavailable, FakedetError

from .tensorrt_rules import BuildRecipe

log = logging.getLogger(__name__)


class BuildError(FakedetError):
    """TensorRT could not parse the ONNX model or build an engine from it."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or a broken install failing to load libnvinfer
        raise BackendUnavailable(
            f"TensorRT is not installed here ({type(e).__name__}); install it (pip install 'fakedet[trt]', "
            "or JetPack's python3-libnvinfer) on the machine the plan is for"
        ) from None
    return trt


def device_facts(device: int = 0) -> tuple[str, str]:
    """(compute capability 'major.minor', device name) of a CUDA device, through the runtime's
    CUDA layer (cuda-python, then pycuda), then torch: whichever the machine has."""
    from fakedet.runtime.cuda_api import load_cuda

    try:
        cuda = load_cuda(device=device)
        try:
            info = cuda.device_info()
        finally:
            cuda.close()
        return info.compute_capability, info.name
    except (BackendUnavailable, RuntimeError) as e:
        why = str(e)
    try:  # a JetPack image may have TensorRT and torch but neither CUDA binding
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return f"{major}.{minor}", torch.cuda.get_device_name(device)
        why += "; torch: no CUDA device"
    except ImportError:
        why += "; torch not installed"
    except Exception as e:  # a broken torch install, or no such device
        why += f"; torch: {type(e).__name__}: {str(e)[:120]}"
    raise BackendUnavailable(f"no CUDA device found ({why}); TensorRT plans are built on the GPU they run on")


def cache_only_calibrator(trt, cache: bytes):
    """An IInt8EntropyCalibrator2 that never sees data: it hands TensorRT the package's
    calibration cache, which `fakedet calibrate` wrote (implicit INT8, TensorRT <= 10)."""

    class CacheOnlyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None  # no data: TensorRT must take the ranges from the cache

        def read_calibration_cache(self):
            return cache

        def write_calibration_cache(self, data):
            return None

    return CacheOnlyCalibrator()


def build_plan(onnx_path: Path, recipe: BuildRecipe, profiles: list[dict], workspace: int,
               dla_core: int | None = None, timing_cache: Path | None = None, version_compatible: bool = False,
               hardware_compat: str = "none", calibration_cache: bytes | None = None) -> bytes:
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if dla_core is not None and dla_core >= builder.num_DLA_cores:
        raise BuildError(f"--dla {dla_core}: this device has {builder.num_DLA_cores} DLA core(s) "
                         "(DLA exists on Jetson AGX/NX Xavier and Orin)")

    flags = 0
    for name in recipe.network_flags:
        flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if flag is None:  # building without it would silently change precision (STRONGLY_TYPED on 11)
            raise BuildError(f"TensorRT {trt.__version__} has no NetworkDefinitionCreationFlag.{name}")
        flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"{onnx_path.name}: TensorRT's ONNX parser refused it: {errors[:500]}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    for name in recipe.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))

    profile = builder.create_optimization_profile()
    for p in profiles:
        profile.set_shape(p["input"], p["min"], p["opt"], p["max"])
    config.add_optimization_profile(profile)

    if recipe.calibration == TRT_CALIBRATION_CACHE:
        config.int8_calibrator = cache_only_calibrator(trt, calibration_cache or b"")
        config.set_calibration_profile(profile)

    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hardware_compat == "ampere+":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"{onnx_path.name}: TensorRT failed to build an engine (see its log above)")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))
