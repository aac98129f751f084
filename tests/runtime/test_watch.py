"""`fakedet watch` on videos the tests write with OpenCV's VideoWriter and on a local
MJPEG stream that vanishes and comes back. The package's score rises with brightness,
so bright frames planted in a dark video are the "fakes"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from appliance_helpers import REPO, MjpegStream, build_brightness_package, wait_until, write_video  # noqa: E402

from fakedet.cli import main  # noqa: E402

DARK, BRIGHT = 20, 240


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_brightness_package(tmp_path_factory.mktemp("watch-pkg"))


def levels(n, planted):
    return [BRIGHT if i in planted else DARK for i in range(n)]


def run_watch(package, out, *args):
    rc = main(["watch", str(package), "--out", str(out), "-q", *map(str, args)])
    return rc, [json.loads(line) for line in out.read_text().splitlines()]


def frames_of(events):
    return [e for e in events if e["event"] == "frame"]


def test_alert_fires_on_the_planted_run_and_scores_match_the_runtime(package, tmp_path, capsys):
    planted = set(range(12, 20))
    video = write_video(tmp_path / "clip.avi", levels(30, planted))
    rc, events = run_watch(package, tmp_path / "ev.jsonl", "--source", video, "--every", 1,
                           "--alert-threshold", 0.5, "--alert-frames", 4)
    assert rc == 0
    frames = frames_of(events)
    assert [e["frame"] for e in frames] == list(range(30))
    assert [e["time_s"] for e in frames[:3]] == [0.0, 0.1, 0.2]  # media time at 10 fps
    assert {e["frame"] for e in frames if e["score"] >= 0.5} == planted

    # The same frames decoded here and scored by the embedding API (BGR, as OpenCV gives them).
    from fakedet.runtime import Detector

    cap, decoded = cv2.VideoCapture(str(video)), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(f)
    with Detector.open(package) as det:
        want = [p.score for p in det.predict_frames(decoded, channels="BGR")]
    assert [e["score"] for e in frames] == pytest.approx(want, abs=1e-5)

    alerts = [e for e in events if e["event"] == "alert"]
    assert len(alerts) == 1
    assert (alerts[0]["first_frame"], alerts[0]["frame"], alerts[0]["frames"]) == (12, 15, 4)
    assert alerts[0]["min_score"] >= 0.5
    assert events.index(alerts[0]) == events.index(next(e for e in frames if e["frame"] == 15)) + 1
    summary = events[-1]
    assert summary["event"] == "summary" and summary["ended"] == "end of stream"
    assert (summary["frames_read"], summary["frames_scored"], summary["fake_frames"], summary["alerts"]) == \
        (30, 30, 8, 1)
    assert "ALERT" in capsys.readouterr().err


def test_sampling_every_nth_or_by_stream_fps_and_alerts_rearm(package, tmp_path):
    video = write_video(tmp_path / "clip.avi", levels(40, set(range(6, 12)) | set(range(24, 27)) | {33}))
    rc, events = run_watch(package, tmp_path / "a.jsonl", "--source", video, "--every", 3,
                           "--alert-frames", 2, "--batch", 4)
    assert rc == 0
    assert [e["frame"] for e in frames_of(events)] == list(range(0, 40, 3))
    # sampled planted frames: 6, 9 (run of 2 -> alert), 24 (run of 1), 33 (run of 1)
    assert [(a["first_frame"], a["frame"]) for a in events if a["event"] == "alert"] == [(6, 9)]
    rc, events = run_watch(package, tmp_path / "b.jsonl", "--source", video, "--fps", 5, "--alert-frames", 1)
    assert [e["frame"] for e in frames_of(events)] == list(range(0, 40, 2))  # 5 of the video's 10 fps
    assert [a["frame"] for a in events if a["event"] == "alert"] == [6, 24]  # once per run, re-armed
    rc, events = run_watch(package, tmp_path / "c.jsonl", "--source", video, "--max-frames", 7)
    assert rc == 0 and events[-1]["ended"] == "max frames" and events[-1]["frames_read"] == 7


def test_a_source_that_never_opens_is_a_usage_error_after_its_retries(package, tmp_path, capsys):
    rc = main(["watch", str(package), "--source", str(tmp_path / "nothing.avi"), "--reconnects", 2,
               "--reconnect-delay", 0.01])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot open this video source" in err and "attempt 2/2" in err
    assert main(["watch", str(package), "--source", "x.avi", "--every", 2, "--fps", 1]) == 2


def test_stream_lost_for_good_gives_up_and_says_so(package, tmp_path):
    from fakedet.runtime import Detector
    from fakedet.runtime.watch import Watcher, WatchSettings

    stream = MjpegStream().start()
    events, said = [], []

    def emit(e):
        events.append(e)
        if len(frames_of(events)) == 10:
            stream.stop()

    with Detector.open(package) as det:
        watcher = Watcher(det, WatchSettings(source=stream.url, batch=2, reconnects=2, reconnect_delay_s=0.05,
                                             open_timeout_s=2), emit, said.append)
        summary = watcher.run()
    assert summary.ended == "source lost" and summary.reconnects == 0
    assert [e["event"] for e in events if e["event"] != "frame"] == ["disconnected", "gave_up"]
    assert any("stream dropped: retrying" in m for m in said) and any("gave up" in m for m in said)


def _events(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_stream_that_vanishes_is_reconnected_and_ctrl_c_prints_the_summary(package, tmp_path):
    bright_after = 10**9
    stream = MjpegStream(level=lambda i: BRIGHT if i >= bright_after else DARK).start()
    out = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "fakedet", "watch", str(package), "--source", stream.url, "--batch", "2",
           "--reconnect-delay", "0.2", "--alert-frames", "3", "--out", str(out), "--threads", "1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=REPO,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), text=True)
    try:
        wait_until(lambda: len(frames_of(_events(out))) >= 5)
        stream.stop()  # the camera vanishes
        wait_until(lambda: any(e["event"] == "disconnected" for e in _events(out)))
        time.sleep(0.5)
        bright_after = 0  # it comes back, now showing "fakes"
        stream = MjpegStream(level=lambda i: BRIGHT if i >= bright_after else DARK, port=stream.port).start()
        wait_until(lambda: any(e["event"] == "alert" for e in _events(out)))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        stream.stop()
    assert proc.returncode == 130, err
    events = _events(out)
    kinds = [e["event"] for e in events]
    assert kinds.index("disconnected") < kinds.index("reconnected") < kinds.index("alert")
    after = [e for e in frames_of(events) if e["frame"] >= events[kinds.index("reconnected")]["frame"]]
    assert after and all(e["score"] >= 0.5 for e in after)
    before = [e for e in frames_of(events) if e["frame"] < events[kinds.index("disconnected")]["frame"]]
    assert before and all(e["score"] < 0.5 for e in before)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["ended"] == "interrupted" and summary["reconnects"] == 1
    assert "stream dropped" in err and "reconnected" in err and "interrupted:" in err


def test_predict_frames_needs_the_channel_order_and_honours_it(tiny_package):
    from fakedet.runtime import Detector

    path, _ = tiny_package
    rgb = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    with Detector.open(path) as det:
        want = det.predict([rgb])[0].score
        assert det.predict_frames([bgr], channels="BGR")[0].score == pytest.approx(want, abs=1e-7)
        assert det.predict_frames([rgb], channels="rgb")[0].score == pytest.approx(want, abs=1e-7)
        assert det.predict_frames([bgr], channels="RGB")[0].score != pytest.approx(want, abs=1e-4)
        with pytest.raises(ValueError, match="BGR"):
            det.predict_frames([rgb], channels="YUV")
