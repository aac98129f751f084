"""A real NVIDIA Triton Inference Server serving `fakedet export --format triton
--image-endpoint`: encoded images in, scores out, on 127.0.0.1.

The server is the tritonserver binary inside nvidia-pytriton's wheel (PyPI), which has
Triton's Python backend (not its onnxruntime or tensorrt backends). Its Python stub
mis-reads BYTES tensors under numpy 2, so the model's Python environment is a separate
one with numpy < 2 and fakedet's runtime: `make test-triton` makes both and runs this.
Marked slow: the default suite does not start servers."""

from __future__ import annotations

import importlib.util
import io
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STUB_ENV = ROOT / ".triton-env" / "bin" / "python"


def _tritonserver() -> Path:
    spec = importlib.util.find_spec("pytriton")  # finds the package without importing it (installed --no-deps)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nvidia-pytriton (its tritonserver binary) is not installed: make test-triton")
    server = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    if not (server / "bin" / "tritonserver").is_file():
        pytest.skip(f"no tritonserver binary under {server}")
    return server


def _stub_env() -> tuple[str, str]:
    """(python major.minor, site-packages) of the environment the Python backend runs."""
    if not STUB_ENV.is_file():
        pytest.skip(f"{STUB_ENV} missing: make test-triton creates it (numpy<2 + fakedet's runtime)")
    out = subprocess.run([str(STUB_ENV), "-c", "import sys, site; print('%d.%d' % sys.version_info[:2]); "
                          "print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True)
    version, site_packages = out.stdout.split()
    return version, site_packages


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _png(seed: int, size=(24, 20)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def server(tiny_package, tmp_path):
    grpc = pytest.importorskip("tritonclient.grpc")
    triton = _tritonserver()
    version, site_packages = _stub_env()
    stub = triton / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        pytest.skip(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    backends = tmp_path / "backends"
    shutil.copytree(triton / "backends", backends)
    shutil.copy2(stub, backends / "python" / stub.name)  # what pytriton does at start-up

    from fakedet.cli import main

    repo = tmp_path / "repo"
    assert main(["export", str(tiny_package[0]), "-o", str(repo), "--format", "triton", "--name", "tiny",
                 "--image-endpoint", "--instance", "cpu:1", "--max-batch", "8"]) == 0
    http, grpc_port, metrics = _free_ports(3)
    log = (tmp_path / "tritonserver.log").open("w")
    # the copied stub finds the libraries the wheel vendors (CUDA runtime stubs) through this
    libs = triton.parents[1] / "nvidia_pytriton.libs"
    env = {"PATH": "/usr/bin:/bin", "FAKEDET_PYTHONPATH": site_packages, "LD_LIBRARY_PATH": str(libs)}
    proc = subprocess.Popen(
        [str(triton / "bin" / "tritonserver"), f"--model-repository={repo}", f"--backend-directory={backends}",
         "--model-control-mode=explicit", "--load-model=tiny_images", "--http-address=127.0.0.1",
         "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1", f"--http-port={http}",
         f"--grpc-port={grpc_port}", f"--metrics-port={metrics}", "--exit-timeout-secs=5"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    client = grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        deadline = time.monotonic() + 90
        while True:
            text = (tmp_path / "tritonserver.log").read_text()
            if proc.poll() is not None or "failed to load 'tiny_images'" in text:
                pytest.fail(f"tritonserver could not serve tiny_images (exit {proc.returncode}):\n{text[-3000:]}")
            try:
                if client.is_model_ready("tiny_images"):
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tiny_images not ready in 90 s:\n{text[-3000:]}")
            time.sleep(0.5)
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _infer(client, blobs: list[bytes]):
    import tritonclient.grpc as grpc

    x = np.array([[b] for b in blobs], dtype=object)
    inp = grpc.InferInput("IMAGE", list(x.shape), "BYTES")
    inp.set_data_from_numpy(x)
    r = client.infer("tiny_images", [inp])
    return r.as_numpy("SCORE")[:, 0], r.as_numpy("IS_FAKE")[:, 0], r.as_numpy("ERROR")[:, 0]


def test_triton_serves_scores_equal_to_the_runtime(server, tiny_package):
    from fakedet.runtime.detector import Detector

    good = [_png(1), _png(2, (40, 33)), _png(3)]
    blobs = [good[0], b"GIF89a but not really", good[1], good[2]]
    scores, fake, errors = _infer(server, blobs)
    with Detector.open(tiny_package[0], backend="ort-cpu") as det:
        want = det.predict(good)
    np.testing.assert_allclose(scores[[0, 2, 3]], [p.score for p in want], rtol=1e-5, atol=1e-6)
    assert list(fake[[0, 2, 3]]) == [p.is_fake for p in want]
    assert np.isnan(scores[1]) and errors[1] and errors[0] == errors[2] == errors[3] == b""
    # a second request on the same instance: the model stays healthy after a bad image
    again, _, _ = _infer(server, [good[2]])
    np.testing.assert_allclose(again, [want[2].score], rtol=1e-5, atol=1e-6)



def test_concurrent_requests_each_get_their_own_rows(server, tiny_package):
    """Requests the dynamic batcher merges into one execute() call are split back per request."""
    import threading

    from fakedet.runtime.detector import Detector

    requests = [[_png(10 + i)] * (1 + i % 2) for i in range(6)]  # 6 requests of 1 or 2 rows
    with Detector.open(tiny_package[0], backend="ort-cpu") as det:
        want = [[p.score for p in det.predict(r)] for r in requests]
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(requests))

    def send(i):
        start.wait(timeout=30)
        got[i] = _infer(server, requests[i])[0]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(got) == list(range(len(requests)))
    for i, scores in got.items():
        np.testing.assert_allclose(scores, want[i], rtol=1e-5, atol=1e-6)
