"""The decode budget (finding 1 of the hostile-client review): a JPEG scan bomb is refused
from its markers before decoding, and any decode that outlives its budget has its worker
process killed, in every face that decodes untrusted bytes (Detector, `fakedet predict`)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from decode_bombs import _sos_segments, progressive_jpeg, scan_bomb
from fakedet.errors import ImageError
from fakedet.runtime import Detector
from fakedet.runtime.decode_pool import DecodePool
from fakedet.runtime.imageio import load_image
from fakedet.runtime.jpeg_scans import MAX_JPEG_SCANS, jpeg_scans
from hostile_corpus import encode

BOMB_EXTRA = 1000  # ~7 s of libjpeg work on one core without the check


def test_scan_count_read_from_the_markers():
    plain = progressive_jpeg()
    assert jpeg_scans(plain) == (len(_sos_segments(plain)), True) and jpeg_scans(plain)[0] == 10
    assert jpeg_scans(encode("JPEG")) == (1, False)
    assert jpeg_scans(scan_bomb(BOMB_EXTRA, (64, 64))) == (10 + BOMB_EXTRA, True)
    assert jpeg_scans(encode("PNG")) is None
    assert jpeg_scans(plain[:300]) is not None  # truncated: counts what it saw, never raises


def test_scan_bomb_refused_before_decoding(tmp_path):
    bomb = scan_bomb(BOMB_EXTRA)
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bomb)
    want = f"progressive JPEG with {10 + BOMB_EXTRA} scans, limit {MAX_JPEG_SCANS}"
    for source in (bomb, path):
        t0 = time.perf_counter()
        with pytest.raises(ImageError, match=want):
            load_image(source)
        assert time.perf_counter() - t0 < 1.0


def test_detector_fails_the_bomb_and_scores_the_rest(tiny_package, tmp_path):
    pkg, _ = tiny_package
    good = encode("PNG")
    with Detector.open(pkg, backend="ort-cpu") as det:
        t0 = time.perf_counter()
        preds = det.predict([good, scan_bomb(BOMB_EXTRA), good])
        took = time.perf_counter() - t0
    assert preds[0].ok and preds[2].ok and preds[0].score == preds[2].score
    assert "progressive JPEG with 1010 scans, limit 100" in preds[1].error
    assert took < 5.0, took


def test_slow_decode_abandoned_after_the_budget(tiny_package):
    """Under the scan limit but seconds of work (100 scans of a 4096x4096 image): the worker
    is killed at the budget, the image fails with the reason, the next image is scored."""
    slow = scan_bomb(MAX_JPEG_SCANS - 10, (4096, 4096))
    with Detector.open(pkg := tiny_package[0], backend="ort-cpu") as det:
        det.set_decode_budget(0.5)
        det.predict([encode("PNG")])  # the worker process is up
        t0 = time.perf_counter()
        slow_pred, good = det.predict([slow, encode("PNG")])
        took = time.perf_counter() - t0
    assert pkg.exists()
    assert slow_pred.error == "decode took longer than 0.5 s"
    assert good.ok
    assert took < 5.0, took  # 0.5 s, then the next image: the decode alone would take ~3 s


def test_cancel_and_crash_cost_one_image():
    import threading

    pool = DecodePool(30.0)
    try:
        pool.load(encode("PNG"), 10**8)  # the worker is up: its start-up is not what is timed
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        t0 = time.perf_counter()
        with pytest.raises(ImageError, match="cancelled"):
            pool.load(scan_bomb(MAX_JPEG_SCANS - 10, (4096, 4096)), 10**8, cancelled=cancel)
        assert time.perf_counter() - t0 < 2.0  # the decode alone takes ~3 s on an idle core
        with pytest.raises(ImageError, match="deadline"):
            pool.load(scan_bomb(MAX_JPEG_SCANS - 10, (4096, 4096)), 10**8, deadline=time.monotonic() + 0.3)
        assert pool.load(encode("PNG"), 10**8).size == (24, 20)
    finally:
        pool.close()


def test_predict_cli_reports_the_bomb_in_one_line(tiny_package, tmp_path):
    pkg, _ = tiny_package
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(scan_bomb(BOMB_EXTRA))
    good = tmp_path / "good.png"
    good.write_bytes(encode("PNG"))
    r = subprocess.run([sys.executable, "-m", "fakedet", "predict", str(pkg), str(good), str(bomb),
                        "--backend", "ort-cpu"], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "bomb.jpg" in ln)
    assert "ERROR" in line and "progressive JPEG with 1010 scans, limit 100" in line
    assert any("good.png" in ln and "ERROR" not in ln for ln in r.stdout.splitlines())
