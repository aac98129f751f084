"""SIGTERM ends every face within seconds, even while ONNX Runtime runs a model that never
returns (finding 7 of the hostile-client review): a package whose ONNX holds a Loop with
a 2^63 - 1 trip count, made here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance_helpers import ServerProcess, flat_png, free_port, request
from conftest import write_spec
from endless_models import loop_onnx, loop_package

STOP_WITHIN_S = 5.0


def _spawn(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "fakedet", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def _term_after(proc, wait_s: float) -> tuple[float, str]:
    time.sleep(wait_s)
    assert proc.poll() is None, proc.communicate()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("SIGTERM did not end the process within 20 s")
    return time.monotonic() - t0, err


@pytest.fixture(scope="module")
def endless(tmp_path_factory):
    return loop_package(tmp_path_factory.mktemp("endless"))


def test_predict_ends_on_sigterm_inside_the_model(endless, tmp_path):
    (tmp_path / "white.png").write_bytes(flat_png(255))
    proc = _spawn(["predict", endless, tmp_path / "white.png", "--backend", "ort-cpu"], tmp_path)
    took, err = _term_after(proc, 4.0)
    assert took < STOP_WITHIN_S and proc.returncode == 143, (took, proc.returncode, err)
    assert "terminated" in err and "Traceback" not in err


def test_package_ends_on_sigterm_in_its_smoke_test_and_leaves_nothing(tmp_path):
    src = loop_onnx(tmp_path / "endless.onnx")
    spec = write_spec(tmp_path / "spec.json", name="endless")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _spawn(["package", src, "--input-spec", spec, "-o", out_dir / "endless.fdet"], tmp_path)
    took, err = _term_after(proc, 4.0)
    assert took < STOP_WITHIN_S and proc.returncode == 143, (took, proc.returncode, err)
    assert list(out_dir.iterdir()) == []  # no package, no staging folder


def test_serve_sigterm_during_an_endless_warmup(endless, tmp_path):
    port = free_port()
    proc = _spawn(["serve", endless, "--port", port, "--threads", 1], tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # up and warming up: /readyz says so
        try:
            r = request(port, "GET", "/readyz", timeout=2)
            if r.status == 503 and r.json()["reason"] == "warming up":
                break
        except OSError:
            time.sleep(0.1)
    took, err = _term_after(proc, 0.5)
    assert took < STOP_WITHIN_S and proc.returncode == 0, (took, proc.returncode, err[-2000:])


def test_serve_fails_with_the_reason_when_warmup_never_ends(endless, tmp_path):
    proc = _spawn(["serve", endless, "--port", free_port(), "--warmup-timeout-s", 2], tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err[-2000:]
    assert "warm-up did not finish within 2 s" in err.splitlines()[-1]


DEADLINE_S = 1.0
WHITE_TARGET_S = 6.0  # >= 4 x the deadline on this machine, whatever its speed and load


def _trips_for(target_s: float, work: Path, probe_trips: int = 200_000) -> int:
    """The loop model's trips per unit of brightness that make a white image (normalized
    value 2.0 under write_spec's mean/std) cost `target_s` here: a probe model is timed in
    ONNX Runtime first, so the cost is pinned to the deadline, not to the machine."""
    import numpy as np
    import onnxruntime as ort

    work.mkdir(parents=True, exist_ok=True)
    path = loop_onnx(work / "probe.onnx", probe_trips)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    white = np.full((1, 3, 16, 16), 2.0, np.float32)
    t0 = time.perf_counter()
    sess.run(None, {"input": white})
    seconds = time.perf_counter() - t0
    return int(probe_trips * target_s / max(seconds, 1e-3))


def test_an_abandoned_batch_stops_the_model(tmp_path):
    """A white image costs the model ~6 s (its Loop's trips per unit of brightness are timed
    here first); after its request's 504 (1 s) the run is stopped, so a dark image sent
    next is answered at once, not after the white one's remaining seconds."""
    slow = loop_package(tmp_path / "slow", trips_per_unit=_trips_for(WHITE_TARGET_S, tmp_path / "probe"))
    with ServerProcess(slow, tmp_path / "log", "--max-batch", 1, "--max-delay-ms", 0) as srv:
        png = {"Content-Type": "image/png"}
        r = request(srv.port, "POST", f"/v1/detect?timeout_s={DEADLINE_S:g}", flat_png(255), png)
        assert r.status == 504
        t0 = time.perf_counter()
        dark = request(srv.port, "POST", "/v1/detect?timeout_s=3", flat_png(0), png)
        assert dark.status == 200 and time.perf_counter() - t0 < 1.5, (dark, time.perf_counter() - t0)
