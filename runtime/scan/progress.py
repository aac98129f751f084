"""A progress line on stderr: images done of the total, images/s and ETA. Redrawn in place
on a terminal; elsewhere (logs, CI) a line every `log_every` seconds."""

from __future__ import annotations

import sys
import time


def clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    def __init__(self, total: int, stream=None, enabled: bool = True, log_every: float = 10.0):
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.25 if self.tty else log_every
        self.t0 = time.perf_counter()
        self._last = 0.0

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.t0
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        eta = clock((self.total - self.done) / rate) if rate > 0 else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"scan: {self.done}/{self.total} images ({pct:5.1f}%), {self.failed} failed, "
                f"{rate:.1f} images/s, ETA {eta}")

    def update(self, rows: int, failed: int = 0) -> None:
        self.done += rows
        self.failed += failed
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.every:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        end = "\r" if self.tty else "\n"
        self.stream.write(self.line() + end)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
