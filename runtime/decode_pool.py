"""Decoding untrusted bytes in worker processes that can be abandoned.

A thread cannot be stopped while Pillow's C decoder runs; a process can. Each worker
decodes one image at a time (`load_image`, the same code as in-process) and sends back
the RGB pixels. A decode that outlives its budget, or whose request was cancelled, has
its worker killed (a fresh one takes its place on the next image) and fails that image
with "decode took longer than N s"; a decoder that crashes costs its image only.

Workers are fresh interpreters (`python -m fakedet.runtime.decode_worker FD`: no model, no
inference threads, no re-import of the caller's script), started lazily on the first
image; they end with their pool, or when their parent's end of the socket closes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

from PIL import Image

from fakedet.errors import ImageError

from .imageio import load_image, source_name

DEFAULT_DECODE_SECONDS = 20.0
_POLL_S = 0.05
STARTUP_S = 60.0


class _Worker:
    def __init__(self):
        from multiprocessing.connection import Connection

        parent, child = socket.socketpair()
        try:
            self.process = subprocess.Popen([sys.executable, "-m", "fakedet.runtime.decode_worker", str(child.fileno())],
                                            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        except (OSError, ValueError) as e:  # no process here (a sandbox; pass_fds off POSIX)
            parent.close()
            raise OSError(f"cannot start a decode worker: {e}") from None
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        # Its start-up (an interpreter importing numpy and Pillow) is not the image's decode time.
        try:
            started = self.conn.poll(STARTUP_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            started = False
        if not started:
            self.kill()
            raise OSError(f"the decode worker did not start within {STARTUP_S:g} s")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.wait(2.0)
        except Exception:
            pass
        self.conn.close()


class DecodePool:
    """`load(source, max_pixels)` like `load_image`, within `seconds` per image, in at most
    `workers` processes at once (callers beyond that wait for a free worker, uncounted).
    `workers=0` decodes in the calling thread, without a budget: for trusted images only."""

    def __init__(self, seconds: float = DEFAULT_DECODE_SECONDS, workers: int = 1):
        if not seconds > 0:
            raise ValueError("the decode budget must be a positive number of seconds")
        self.seconds = float(seconds)
        self.in_process = int(workers) == 0
        self.size = max(1, int(workers))
        self._idle: list[_Worker] = []
        self._slots = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._idle_ready = threading.Condition(self._lock)
        self._starting = 0  # replacements of killed workers still starting
        self._closed = False
        self._warned = False

    # ---- workers -----------------------------------------------------------------
    def _checkout(self) -> _Worker:
        self._slots.acquire()
        try:
            with self._lock:
                while True:
                    if self._closed:
                        raise RuntimeError("the decode pool is closed")
                    while self._idle:
                        w = self._idle.pop()
                        if w.alive():
                            return w
                        w.kill()
                    if not self._starting:
                        break
                    self._idle_ready.wait(STARTUP_S)  # a replacement is on its way: a second one would
                    # only slow both down
            return _Worker()
        except BaseException:
            self._slots.release()
            raise

    def _checkin(self, w: _Worker | None) -> None:
        with self._lock:
            if w is not None:
                if self._closed:
                    w.kill()
                else:
                    self._idle.append(w)
                    self._idle_ready.notify()
        self._slots.release()

    # ---- decoding ------------------------------------------------------------------
    def load(self, source, max_pixels: int, deadline: float | None = None,
             cancelled: threading.Event | None = None, limit_why: str = "decompression-bomb guard") -> Image.Image:
        """Decode `source` (a path or bytes; anything else is decoded here) to RGB. `deadline`
        (time.monotonic()) and `cancelled` end the decode earlier than the budget."""
        if self.in_process or not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
            return load_image(source, max_pixels, limit_why=limit_why)
        name = source_name(source)
        try:
            w = self._checkout()
        except OSError as e:  # where no worker can run, decode here rather than fail every image
            if not self._warned:
                self._warned = True
                warnings.warn(f"{e}; decoding in this process, without a time budget", RuntimeWarning, stacklevel=2)
            return load_image(source, max_pixels, limit_why=limit_why)
        try:
            if isinstance(source, (str, os.PathLike)):
                w.conn.send(("path", str(Path(source)), int(max_pixels), limit_why))
            else:
                w.conn.send(("bytes", None, int(max_pixels), limit_why))
                w.conn.send_bytes(source)
            limit = time.monotonic() + self.seconds
            stop = min(limit, deadline) if deadline is not None else limit
            if not self._wait(w, stop, cancelled):
                w.kill()
                w = None
                self._start_spare()
                if cancelled is not None and cancelled.is_set():
                    raise ImageError(name, "decode cancelled (the request was answered or timed out)")
                if deadline is not None and deadline < limit:
                    raise ImageError(name, "decode did not finish before the request's deadline")
                raise ImageError(name, f"decode took longer than {self.seconds:g} s")
            reply = w.conn.recv()
            if reply[0] == "error":
                raise ImageError(name, reply[1])
            return Image.frombytes("RGB", tuple(reply[1]), w.conn.recv_bytes())
        except (EOFError, OSError, BrokenPipeError):
            if w is not None:
                w.kill()
                w = None
            raise ImageError(name, "the decoder crashed on this image") from None
        finally:
            self._checkin(w)

    def prestart(self) -> None:
        """Start the workers now, in the background, and one spare: after a decode is killed,
        the next image takes the spare instead of waiting for an interpreter to start."""
        with self._lock:
            missing = self.size + 1 - len(self._idle) - self._starting
        for _ in range(max(0, missing)):
            self._start_spare()

    def _start_spare(self) -> None:
        with self._lock:
            self._starting += 1
        threading.Thread(target=self._add_worker, daemon=True).start()

    def _add_worker(self) -> None:
        try:
            w = _Worker()
        except OSError:
            w = None
        with self._lock:
            self._starting -= 1
            if w is not None and (self._closed or len(self._idle) > self.size):
                w.kill()
            elif w is not None:
                self._idle.append(w)
            self._idle_ready.notify_all()

    @staticmethod
    def _wait(w: _Worker, stop: float, cancelled) -> bool:
        while True:
            left = stop - time.monotonic()
            if left <= 0 or (cancelled is not None and cancelled.is_set()):
                return False
            if w.conn.poll(min(left, _POLL_S)):
                return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()

