"""The embedding API: one Detector shared by threads and event loops, warm-up, close,
and the runnable files in examples/."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from appliance_helpers import REPO, build_brightness_package, flat_png, write_video

from fakedet.runtime import Detector


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(16, 40)), int(rng.integers(16, 40)), 3), dtype=np.uint8)
            for _ in range(n)]


class _Probe:
    """Wraps the real backend's infer: counts callers inside it at once, optionally slowly."""

    def __init__(self, backend, delay_s=0.0):
        self.inner, self.delay_s = backend.infer, delay_s
        self.active = self.most = 0
        self.shapes = []
        self.lock = threading.Lock()
        backend.infer = self

    def __call__(self, batch):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            self.shapes.append(batch.shape)
        try:
            time.sleep(self.delay_s)
            return self.inner(batch)
        finally:
            with self.lock:
                self.active -= 1


def test_many_threads_share_one_detector_with_sequential_results(tiny_package):
    path, _ = tiny_package
    images = _images(48)
    with Detector.open(path) as det:
        want = [p.score for p in det.predict(images, batch_size=1)]
        probe = _Probe(det.backend, delay_s=0.002)

        def work(i):
            kind = i % 3
            if kind == 0:
                return i, det.predict([images[i]])[0].score
            if kind == 1:
                return i, det.predict_frames([np.ascontiguousarray(images[i][..., ::-1])], channels="BGR")[0].score
            return i, det.predict([images[i], images[(i + 1) % 48]], batch_size=2)[0].score

        with ThreadPoolExecutor(8) as pool:
            got = dict(pool.map(work, range(48)))
    assert [got[i] for i in range(48)] == pytest.approx(want, abs=1e-6)  # as if made one after another
    assert len(probe.shapes) == 48


def test_concurrent_calls_overlap_on_a_backend_that_allows_them(tiny_package):
    """One owner of serialization, the backend: ONNX Runtime takes concurrent runs, so two
    threads' inference calls through one Detector run at the same time. Each real ORT run
    is preceded by a barrier both calls must reach (a Detector-level lock would hold the
    second call outside: the barrier times out), and their measured intervals overlap."""
    path, w = tiny_package
    images = _images(2, seed=5)
    with Detector.open(path, backend="ort-cpu") as det:
        want = [p.score for p in det.predict(images, batch_size=1)]
        backend, run = det.backend, det.backend._run
        meet = threading.Barrier(2, timeout=10)
        spans = []

        def timed_run(batch):
            meet.wait()  # both calls inside the backend at once, or BrokenBarrierError
            t0 = time.perf_counter()
            out = run(batch)
            time.sleep(0.05)  # still inside the call: the other run's interval must cross this one
            spans.append((t0, time.perf_counter()))
            return out

        backend._run = timed_run
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda im: det.predict([im])[0], images))
    assert [p.error for p in got] == [None, None]
    assert [p.score for p in got] == pytest.approx(want, abs=1e-6)
    (a0, a1), (b0, b1) = spans
    assert max(a0, b0) < min(a1, b1)  # the two inference intervals overlap in time


def test_apredict_scores_concurrently_without_blocking_the_loop(tiny_package):
    path, _ = tiny_package
    images = _images(6, seed=3)
    with Detector.open(path) as det:
        want = [p.score for p in det.predict(images)]
        _Probe(det.backend, delay_s=0.1)

        async def main():
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            t = asyncio.create_task(ticker())
            preds = await asyncio.gather(*(det.apredict([im]) for im in images),
                                         det.apredict_frames([images[0][..., ::-1]], channels="BGR"))
            t.cancel()
            return preds, ticks

        preds, ticks = asyncio.run(main())
    assert [p[0].score for p in preds[:-1]] == pytest.approx(want, abs=1e-6)
    assert preds[-1][0].score == pytest.approx(want[0], abs=1e-6)
    assert ticks >= 5  # >= 0.1 s of inference (7 x 0.1 s if run one at a time); the loop kept ticking through it


def test_warmup_runs_each_batch_size_and_close_releases(tiny_package):
    path, _ = tiny_package
    det = Detector.open(path)
    probe = _Probe(det.backend)
    seconds = det.warmup(batch_sizes=(1, 8, 8), rounds=2)
    assert seconds > 0
    assert probe.shapes == [(1, 3, 16, 16)] * 2 + [(8, 3, 16, 16)] * 2
    p = det.predict([flat_png(100)])[0]
    assert p.ok and 0 <= p.score <= 1
    det.close()
    assert det.backend.is_open is False


def test_examples_run_as_documented(tmp_path):
    package = build_brightness_package(tmp_path / "pkg")
    a, b = tmp_path / "dark.png", tmp_path / "light.png"
    a.write_bytes(flat_png(10))
    b.write_bytes(flat_png(250))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    video = write_video(tmp_path / "v.avi", [10] * 5 + [250] * 5)
    runs = {
        "embed_threads.py": [str(package), str(a), str(b), str(bad)],
        "embed_async.py": [str(package), str(a), str(b), str(bad)],
        "embed_opencv.py": [str(package), str(video), "2"],
    }
    for script, args in runs.items():
        out = subprocess.run([sys.executable, str(REPO / "examples" / script), *args], capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0, (script, out.stderr)
        lines = out.stdout.strip().splitlines()
        if script == "embed_opencv.py":
            assert [ln.split("\t")[0] for ln in lines] == ["frame 0", "frame 2", "frame 4", "frame 6", "frame 8"]
            assert [ln.split("\t")[2] for ln in lines] == ["real", "real", "real", "FAKE", "FAKE"]
        else:
            assert [ln.split("\t")[2].split()[0] for ln in lines] == ["real", "FAKE", "ERROR"], (script, lines)
