"""Shared pieces of the appliance tests (serve, watch, embedding API): a tiny package whose
score rises with brightness, a real `fakedet serve` process on a free loopback port, and
plain-stdlib HTTP clients (so the tests check the server, not a client library)."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from conftest import build_tiny_onnx, write_spec

REPO = Path(__file__).resolve().parents[1]

# The head: logit = FC_GAIN * mean over channels of relu(3x3 average of normalized pixels)
# + FC_BIAS; with the spec's mean 0.5 / std 0.25, dark images score about sigmoid(-4) = 0.02
# and white ones up to sigmoid(4) = 0.98 (the conv's zero padding pulls the border down).
FC_GAIN, FC_BIAS = 4.0, -4.0


def build_brightness_package(tmp: Path) -> Path:
    """The tests' tiny conv net with weights set so that its logit is monotone in mean
    brightness: each conv channel averages the 3x3x3 neighbourhood, the head sums them."""
    import onnx
    from onnx import numpy_helper

    from fakedet.cli import main

    tmp.mkdir(parents=True, exist_ok=True)
    onnx_path = tmp / "bright.onnx"
    build_tiny_onnx(onnx_path)
    model = onnx.load(str(onnx_path))
    weights = {
        "conv_w": np.full((4, 3, 3, 3), 1.0 / 27.0, np.float32),
        "conv_b": np.zeros(4, np.float32),
        "fc_w": np.full((1, 4), FC_GAIN / 4.0, np.float32),
        "fc_b": np.array([FC_BIAS], np.float32),
    }
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(weights[init.name], init.name))
    onnx.save(model, str(onnx_path))
    spec = write_spec(tmp / "bright-spec.json", name="bright")
    out = tmp / "bright.fdet"
    assert main(["package", str(onnx_path), "--input-spec", str(spec), "-o", str(out)]) == 0
    return out


def flat_png(value: int, size=(32, 24)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (value, value, value)).save(buf, "PNG")
    return buf.getvalue()


def wait_until(cond, timeout: float = 30.0, what: str = "condition") -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- HTTP ------------------------------------------------------------------------
class Reply:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Reply {self.status} {self.body[:300]!r}>"


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 30.0) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def multipart(parts: list[tuple[str, bytes]], caption=None) -> tuple[bytes, str]:
    """Encode (name, bytes) parts as multipart/form-data: (body, content type). `caption`:
    a caption (str, or raw bytes) or a list of them, each sent as a 'caption' text part."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, data in parts:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                  f"Content-Type: application/octet-stream\r\n\r\n".encode())
        out.write(data + b"\r\n")
    for text in ([] if caption is None else caption if isinstance(caption, list) else [caption]):
        data = text if isinstance(text, bytes) else text.encode()
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="caption"\r\n\r\n'.encode() + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def metric_value(text: str, name: str, labels: dict | None = None) -> float:
    """One sample's value from Prometheus text exposition (0.0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in (labels or {}).items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric, _, lab = key.partition("{")
        if metric == name and lab.rstrip("}") == want:
            return float(value)
    return 0.0


# ---- a real server process ----------------------------------------------------------
class ServerProcess:
    """`fakedet serve PACKAGE ARGS` on a free loopback port; stderr goes to a log file."""

    def __init__(self, package: Path, log: Path, *args, port: int | None = None):
        self.port = port or free_port()
        self.log_path = log
        self.cmd = [sys.executable, "-m", "fakedet", "serve", str(package), "--port", str(self.port),
                    "--threads", "1", *map(str, args)]
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None

    def start(self, timeout: float = 90.0) -> "ServerProcess":
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        t0 = time.perf_counter()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if request(self.port, "GET", "/readyz", timeout=2).status == 200:
                    self.ready_s = time.perf_counter() - t0
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not ready within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()
        if not self._log.closed:
            self._log.close()


# ---- video -----------------------------------------------------------------------------
def write_video(path: Path, levels, size=(64, 48), fps=10.0) -> Path:
    """An MJPG .avi whose frame i is flat grey levels[i] with a faint stripe (OpenCV VideoWriter)."""
    import cv2

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for v in levels:
        frame = np.full((h, w, 3), v, np.uint8)
        frame[::7, :, 1] = v // 2
        writer.write(frame)
    writer.release()
    return path


def jpeg(value: int, size=(64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (value, value, value)).save(buf, "JPEG")
    return buf.getvalue()


class MjpegStream:
    """A local HTTP MJPEG stream (multipart/x-mixed-replace, as IP cameras serve) on a
    loopback port; `level(i)` gives frame i's grey level. stop() makes it vanish."""

    def __init__(self, level=lambda i: 20, port: int | None = None, interval_s: float = 0.02):
        self.level, self.port, self.interval_s = level, port or free_port(), interval_s
        self.server = None
        self.frames_sent = 0

    def start(self) -> "MjpegStream":
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not self.server.stopping:
                        data = jpeg(stream.level(stream.frames_sent))
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                         % (len(data), data))
                        stream.frames_sent += 1
                        time.sleep(stream.interval_s)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.stopping = False
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stopping = True
            self.server.shutdown()
            self.server.server_close()
            self.server = None
