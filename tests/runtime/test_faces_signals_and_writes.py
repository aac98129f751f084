"""Findings 8-10 of the hostile-client review: `watch` sums up on SIGTERM and reports every
reconnection; a full disk or a closed pipe is one line and exit 2 in `predict` and
`watch`; `info` opens the model as `predict` would and says why it cannot run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from appliance_helpers import REPO, MjpegStream, build_brightness_package, flat_png, wait_until
from conftest import build_tiny_onnx
from endless_models import swap_model

cv2 = pytest.importorskip("cv2")

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_brightness_package(tmp_path_factory.mktemp("faces"))


def _fakedet(*args, stdout=subprocess.PIPE):
    return subprocess.run([sys.executable, "-m", "fakedet", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, cwd=REPO, env=ENV, timeout=120)


def _events(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_watch_prints_its_summary_on_sigterm(package, tmp_path):
    stream = MjpegStream().start()
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "fakedet", "watch", str(package), "--source", stream.url,
                             "--batch", "4", "--out", str(out), "--threads", "1"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, cwd=REPO, env=ENV, text=True)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stream.stop)
        cleanup.callback(lambda: proc.poll() is None and proc.kill())
        wait_until(lambda: sum(e["event"] == "frame" for e in _events(out)) >= 6)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 143, err
    last = _events(out)[-1]
    assert last["event"] == "summary" and last["ended"] == "terminated" and last["frames_scored"] >= 6
    assert "terminated:" in err and "Traceback" not in err


def test_a_stream_back_at_the_first_try_is_a_reconnection(package):
    from fakedet.runtime import Detector
    from fakedet.runtime.watch import Watcher, WatchSettings

    streams = [MjpegStream().start()]
    events = []

    def emit(e):
        events.append(e)
        if e["event"] == "frame" and e["frame"] == 10:  # the camera restarts at once
            port = streams[-1].port
            streams[-1].stop()
            streams.append(MjpegStream(port=port).start())

    try:
        with Detector.open(package) as det:
            settings = WatchSettings(source=streams[0].url, batch=1, reconnects=3, reconnect_delay_s=0.05,
                                     open_timeout_s=2, max_frames=40)
            summary = Watcher(det, settings, emit).run()
    finally:
        streams[-1].stop()
    kinds = [e["event"] for e in events if e["event"] != "frame"]
    assert kinds and kinds.count("disconnected") == kinds.count("reconnected") == summary.reconnects >= 1
    assert all(a == "disconnected" and b == "reconnected" for a, b in zip(kinds[::2], kinds[1::2])), kinds
    assert summary.ended == "max frames"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_is_one_line_and_exit_2(package, tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(flat_png(100))
    with open("/dev/full", "w") as full:
        r = _fakedet("predict", package, img, "--json", stdout=full)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "fakedet: error: cannot write the output: No space left on device"

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for _ in range(5):
        writer.write(np.full((48, 64, 3), 50, np.uint8))
    writer.release()
    r = _fakedet("watch", package, "--source", video, "--out", "/dev/full", "-q")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("fakedet: error: cannot write the output /dev/full: "
                                                 "No space left on device")


def test_closed_pipe_is_one_line_and_exit_2(package, tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(flat_png(100 + i))
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first write meets EPIPE
    try:
        r = _fakedet("predict", package, tmp_path, stdout=write_end)
    finally:
        os.close(write_end)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "fakedet: error: cannot write the output: Broken pipe"


def _custom_op(path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Mystery", ["input"], ["output"], domain="com.example")
    graph = helper.make_graph([node], "custom", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.parametrize("make, reason", [
    (_custom_op, "Mystery"),
    (lambda path: build_tiny_onnx(path, two_class=True), "2"),
])
def test_info_says_why_a_model_cannot_run(tiny_package, tmp_path, make, reason):
    pkg = swap_model(tiny_package[0], make)
    predicted = _fakedet("predict", pkg, tmp_path)
    assert predicted.returncode == 2
    r = _fakedet("info", pkg)
    assert r.returncode == 2, r.stdout
    auto = next(ln for ln in r.stdout.splitlines() if "auto ->" in ln)
    assert "cannot run" in auto and reason in auto
    assert "ort-cpu   yes" not in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("fakedet: error: ort-cpu cannot run model.onnx")
