"""ONNX Runtime backend: CPU threads, provider options (TensorRT EP caches), timed inference."""

import numpy as np
import pytest

from fakedet.errors import BackendUnavailable
from fakedet.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, provider_options


def test_provider_options_trt_caches_and_precision(tmp_path):
    cache = tmp_path / "pkg.fdet" / ".cache" / "ort-trt"
    provs = provider_options("ort-trt", {"cache_dir": str(cache), "fp16": True, "device_id": 1})
    assert [p[0] if isinstance(p, tuple) else p for p in provs] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = provs[0][1]
    assert trt["trt_engine_cache_enable"] and trt["trt_timing_cache_enable"]
    assert trt["trt_engine_cache_path"] == str(cache) == trt["trt_timing_cache_path"]
    assert trt["trt_fp16_enable"] is True and trt["trt_int8_enable"] is False and trt["device_id"] == 1
    assert provs[1] == ("CUDAExecutionProvider", {"device_id": 1})
    assert provider_options("ort-cpu", {}) == ["CPUExecutionProvider"]
    with pytest.raises(BackendUnavailable):
        provider_options("ort-rocm", {})


def test_cpu_thread_settings(tiny_onnx):
    path, _ = tiny_onnx
    b = OnnxRuntimeBackend(path, "ort-cpu", threads=1, inter_threads=2, spin=False)
    so = b.session_options()
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 2
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_cpu_infer_matches_bare_session_and_reference(tiny_onnx):
    import onnxruntime as ort

    from conftest import reference_forward

    path, w = tiny_onnx
    x = np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)
    bare = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with OnnxRuntimeBackend(path, "ort-cpu", threads=1) as b:
        out, t = b.infer_timed(x)
        np.testing.assert_array_equal(out, bare)
        np.testing.assert_allclose(out, reference_forward(x, w), rtol=1e-4, atol=1e-5)
        assert t["h2d"] is None and t["d2h"] is None and t["compute"] > 0  # CPU: no copies to time
        assert "CPUExecutionProvider" in b.describe()


def test_io_binding_path_runs_on_host_memory(tiny_onnx):
    """The IO-binding code the GPU sets use by default, bound to host memory here: same
    OrtValue / bind / run_with_iobinding calls, checked against a plain session.run."""
    import onnxruntime as ort

    path, w = tiny_onnx
    x = np.random.default_rng(1).standard_normal((5, 3, 16, 16)).astype(np.float32)
    bare = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with OnnxRuntimeBackend(path, "ort-cpu", threads=1, io_binding=True) as b:
        out, t = b.infer_timed(x)
        np.testing.assert_array_equal(out, bare)
        assert all(t[k] is not None and t[k] >= 0 for k in ("h2d", "compute", "d2h"))  # the bound path timed it
        np.testing.assert_array_equal(b.infer(x[:2]), bare[:2])


def test_gpu_provider_missing_is_reported(tiny_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        OnnxRuntimeBackend(tiny_onnx[0], "ort-cuda").open()


@pytest.mark.gpu
def test_cuda_io_binding_splits_copies(tiny_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu with the CUDA execution provider and a GPU")
    path, _ = tiny_onnx
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    with OnnxRuntimeBackend(path, "ort-cpu") as cpu, OnnxRuntimeBackend(path, "ort-cuda") as gpu:
        out, t = gpu.infer_timed(x)
        np.testing.assert_allclose(out, cpu.infer(x), rtol=1e-3, atol=1e-4)
        assert all(t[k] is not None and t[k] >= 0 for k in ("h2d", "compute", "d2h"))
