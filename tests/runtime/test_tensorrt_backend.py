"""The native TensorRT backend on a real GPU (skipped, with the reason, elsewhere).
No mocked TensorRT: a tiny ONNX model is built into a plan here and run."""

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _need_trt_gpu():
    trt = pytest.importorskip("tensorrt", reason="needs TensorRT (pip install 'fakedet[trt]')")
    from fakedet.runtime.tensorrt_support import detect_environment

    env = detect_environment()
    if not env.usable:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {'; '.join(env.why_absent)}")
    return trt


def _build_plan(trt, onnx_path, plan_path, min_b=1, opt_b=4, max_b=8):
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (min_b, 3, 16, 16), (opt_b, 3, 16, 16), (max_b, 3, 16, 16))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    plan_path.write_bytes(bytes(plan))
    return plan_path


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_plan_runs_splits_batches_and_serves_threads(tiny_onnx, tmp_path, cuda_graph):
    trt = _need_trt_gpu()
    from conftest import assert_threads_agree, reference_forward
    from fakedet.runtime.backends.tensorrt_backend import TensorRTBackend

    onnx_path, w = tiny_onnx
    plan = _build_plan(trt, onnx_path, tmp_path / "tiny.plan")
    rng = np.random.default_rng(0)
    with TensorRTBackend(plan, contexts=2, cuda_graph=cuda_graph) as b:
        assert b.max_batch == 8
        for n in (1, 3, 8, 11, 20):  # 11 and 20 exceed the profile max: split
            x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
            out, t = b.infer_timed(x)
            np.testing.assert_allclose(out, reference_forward(x, w), rtol=1e-3, atol=1e-3)
            assert all(t[k] >= 0 for k in ("h2d", "compute", "d2h"))
        x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
        for _ in range(3):  # repeated fixed shape: the CUDA graph path when enabled
            np.testing.assert_allclose(b.infer(x), reference_forward(x, w), rtol=1e-3, atol=1e-3)
        assert_threads_agree(b, w, threads=4, calls=5, rtol=1e-3, atol=1e-3)
