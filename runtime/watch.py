"""Watch a video file, an RTSP/HTTP stream or a camera: sample frames, score them in
batches, write events as JSON lines, alert on runs of high scores, reconnect when a
stream drops, and summarize at the end (and on Ctrl-C).

OpenCV (`opencv-python-headless`, the `watch` extra) reads the frames; it is imported
only here, when a watch starts.

Events (one JSON object per line):
  {"event": "frame", "frame": 12, "time_s": 1.2, "score": 0.93, "is_fake": true}
  {"event": "frame", "frame": 13, "time_s": 1.3, "error": "..."}           (not scored)
  {"event": "alert", "frame": 15, "time_s": 1.5, "first_frame": 12, "frames": 4,
   "threshold": 0.8, "min_score": 0.91, "max_score": 0.97}
  {"event": "disconnected" | "reconnected" | "gave_up", ...}
  {"event": "summary", ...}                                                 (always last)

`frame` counts frames read from the source (across reconnects); `time_s` is the media
time for files (frame / fps) and seconds since the watch began for streams and cameras.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fakedet.errors import FakedetError, Terminated


@dataclass
class WatchSettings:
    source: str
    every: int | None = None  # score every Nth frame
    fps: float | None = None  # or this many frames per second of stream time
    batch: int = 8
    alert_threshold: float | None = None  # default: the model's threshold
    alert_frames: int = 0  # K consecutive sampled frames >= threshold raise an alert; 0: no alerts
    reconnects: int = 10  # attempts per drop before giving up; 0: never reconnect
    reconnect_delay_s: float = 0.5  # first back-off, doubled per attempt up to max_delay_s
    max_delay_s: float = 8.0
    max_wait_s: float = 0.5  # score a partial batch once its first frame is this old (live sources)
    max_frames: int | None = None  # stop after reading this many frames
    open_timeout_s: float = 10.0

    def __post_init__(self):
        if self.every is not None and self.fps is not None:
            raise FakedetError("give --every or --fps, not both")
        if self.every is not None and self.every < 1:
            raise FakedetError("--every must be at least 1")
        if self.fps is not None and not self.fps > 0:
            raise FakedetError("--fps must be positive")
        if self.alert_frames < 0 or self.batch < 1:
            raise FakedetError("--alert-frames must be >= 0 and --batch >= 1")


@dataclass
class Summary:
    source: str
    ended: str = "running"  # end of stream | source lost | interrupted | terminated | max frames
    frames_read: int = 0
    frames_sampled: int = 0
    frames_scored: int = 0
    frames_failed: int = 0
    fake_frames: int = 0
    alerts: int = 0
    reconnects: int = 0
    max_score: float | None = None
    mean_score: float | None = None
    seconds: float = 0.0
    _score_sum: float = field(default=0.0, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_score_sum")
        return d

    def line(self) -> str:
        scores = (f", max score {self.max_score:.3f}, mean {self.mean_score:.3f}"
                  if self.max_score is not None else "")
        return (f"{self.ended}: {self.frames_read} frames read, {self.frames_sampled} sampled, "
                f"{self.frames_scored} scored ({self.fake_frames} fake), {self.frames_failed} failed, "
                f"{self.alerts} alert(s), {self.reconnects} reconnect(s){scores} in {self.seconds:.1f} s")


def parse_source(text: str):
    """A camera index ('0') -> int; anything else (file, rtsp://, http://) stays a string."""
    s = str(text).strip()
    return int(s) if s.isdigit() else s


def _cv2():
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own chatter; we say what happened
    try:
        import cv2
    except ImportError:
        raise FakedetError("'fakedet watch' needs OpenCV: pip install 'fakedet[watch]'") from None
    return cv2


class Watcher:
    """Runs one watch. `emit(dict)` receives events; `say(str)` human messages."""

    def __init__(self, detector, settings: WatchSettings, emit, say=lambda msg: None):
        self.det = detector
        self.s = settings
        self.emit = emit
        self.say = say
        self.cv2 = _cv2()
        self.source = parse_source(settings.source)
        self.is_file = isinstance(self.source, str) and "://" not in self.source
        self.threshold = settings.alert_threshold if settings.alert_threshold is not None else detector.threshold
        self.summary = Summary(source=str(settings.source))
        self._pending: list[tuple[int, float, object]] = []
        self._pending_since = 0.0
        self._run_start: int | None = None
        self._run_scores: list[float] = []
        self._next_sample_t = 0.0
        self._t0 = time.monotonic()
        self._fps = 0.0
        self._frame_count = 0

    # ---- the source --------------------------------------------------------------
    def _open(self):
        cv2 = self.cv2
        if isinstance(self.source, int):
            cap = cv2.VideoCapture(self.source)
        elif self.is_file:
            if not Path(self.source).is_file():
                return None
            cap = cv2.VideoCapture(self.source)
        else:
            ms = int(self.s.open_timeout_s * 1000)
            cap = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        if not cap.isOpened():
            cap.release()
            return None
        self._fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if self.is_file:
            self._frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if self.summary.frames_read:  # resume a file where it dropped
                cap.set(cv2.CAP_PROP_POS_FRAMES, self.summary.frames_read)
        return cap

    def _connect(self, after_drop: bool):
        """Open the source, retrying with doubling back-off; None when it cannot be had. After
        a drop, each success (the first, immediate try included) is a reconnection."""
        cap = self._open()
        if cap is not None:
            if after_drop:
                self._reconnected(0)
            return cap
        if not after_drop and not self.s.reconnects:
            return None
        delay = self.s.reconnect_delay_s
        for attempt in range(1, self.s.reconnects + 1):
            self.say(f"{'stream dropped' if after_drop else 'cannot open the source'}: retrying in "
                     f"{delay:g} s (attempt {attempt}/{self.s.reconnects})")
            time.sleep(delay)
            cap = self._open()
            if cap is not None:
                if after_drop:
                    self._reconnected(attempt)
                return cap
            delay = min(delay * 2, self.s.max_delay_s)
        return None

    def _reconnected(self, attempts: int) -> None:
        """`attempts`: the retries it took after the drop (0: reopened at once)."""
        self.summary.reconnects += 1
        self.say(f"reconnected to {self.s.source} after {attempts} retr{'y' if attempts == 1 else 'ies'}")
        self.emit({"event": "reconnected", "frame": self.summary.frames_read, "attempts": attempts,
                   "time_s": self._elapsed()})

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    def _frame_time(self, index: int) -> float:
        if self.is_file and self._fps > 0:
            return round(index / self._fps, 4)
        return self._elapsed()

    # ---- sampling and scoring ---------------------------------------------------------
    def _sampled(self, index: int, t: float) -> bool:
        if self.s.every:
            return index % self.s.every == 0
        if self.s.fps:
            if t + 1e-9 >= self._next_sample_t:
                self._next_sample_t += 1.0 / self.s.fps
                if self._next_sample_t <= t:  # a stream that stalled: do not burst to catch up
                    self._next_sample_t = t + 1.0 / self.s.fps
                return True
            return False
        return True

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        preds = self.det.predict_frames([f for _, _, f in batch], channels="BGR", batch_size=len(batch))
        for (index, t, _), p in zip(batch, preds):
            self._record(index, t, p)

    def _record(self, index: int, t: float, p) -> None:
        sm = self.summary
        if not p.ok:
            sm.frames_failed += 1
            self.emit({"event": "frame", "frame": index, "time_s": t, "error": p.error})
            self._run_start, self._run_scores = None, []
            return
        sm.frames_scored += 1
        sm.fake_frames += int(bool(p.is_fake))
        sm._score_sum += p.score
        sm.max_score = p.score if sm.max_score is None else max(sm.max_score, p.score)
        sm.mean_score = sm._score_sum / sm.frames_scored
        self.emit({"event": "frame", "frame": index, "time_s": t, "score": round(p.score, 6),
                   "is_fake": bool(p.is_fake)})
        if not self.s.alert_frames:
            return
        if p.score >= self.threshold:
            if self._run_start is None:
                self._run_start = index
            self._run_scores.append(p.score)
            if len(self._run_scores) == self.s.alert_frames:  # once per run; re-armed below threshold
                sm.alerts += 1
                alert = {"event": "alert", "frame": index, "time_s": t, "first_frame": self._run_start,
                         "frames": self.s.alert_frames, "threshold": self.threshold,
                         "min_score": round(min(self._run_scores), 6), "max_score": round(max(self._run_scores), 6)}
                self.emit(alert)
                self.say(f"ALERT: {self.s.alert_frames} consecutive sampled frames >= {self.threshold:g} "
                         f"(frames {self._run_start}-{index}, t={t:g} s)")
        else:
            self._run_start, self._run_scores = None, []

    # ---- the loop ----------------------------------------------------------------------
    def run(self) -> Summary:
        sm = self.summary
        cap = None
        try:
            cap = self._connect(after_drop=False)
            if cap is None:
                raise FakedetError(f"{self.s.source}: cannot open this video source")
            self.say(f"watching {self.s.source}" + (f" ({self._fps:g} fps)" if self._fps else ""))
            drops = 0  # drops since the last frame read: a source that reopens but yields nothing is lost too
            while True:
                if self.s.max_frames is not None and sm.frames_read >= self.s.max_frames:
                    sm.ended = "max frames"
                    break
                ok, frame = cap.read()
                if not ok:
                    if self.is_file and (not self._frame_count or sm.frames_read >= self._frame_count):
                        sm.ended = "end of stream"
                        break
                    self._flush()
                    cap.release()
                    drops += 1
                    self.say(f"{self.s.source}: no frame after frame {sm.frames_read - 1}: the stream dropped")
                    self.emit({"event": "disconnected", "frame": sm.frames_read, "time_s": self._elapsed()})
                    cap = self._connect(after_drop=True) if drops <= self.s.reconnects else None
                    if cap is None:
                        sm.ended = "source lost"
                        self.emit({"event": "gave_up", "attempts": self.s.reconnects, "time_s": self._elapsed()})
                        self.say(f"gave up on {self.s.source} after {self.s.reconnects} attempt(s)")
                        break
                    continue
                drops = 0
                index = sm.frames_read
                sm.frames_read += 1
                t = self._frame_time(index)
                if self._sampled(index, t):
                    sm.frames_sampled += 1
                    if not self._pending:
                        self._pending_since = time.monotonic()
                    self._pending.append((index, t, frame))
                if len(self._pending) >= self.s.batch or (
                        self._pending and not self.is_file
                        and time.monotonic() - self._pending_since >= self.s.max_wait_s):
                    self._flush()
            self._flush()
        except (KeyboardInterrupt, Terminated) as stop:  # Ctrl-C or SIGTERM: score what is pending, sum up
            sm.ended = "interrupted" if isinstance(stop, KeyboardInterrupt) else "terminated"
            try:
                self._flush()
            except (KeyboardInterrupt, Terminated):
                pass
        finally:
            if cap is not None:
                cap.release()
            sm.seconds = round(time.monotonic() - self._t0, 3)
        return sm


class EventLog:
    """JSON lines to a file (or stdout), flushed per event so a tail -f sees them live.
    An events log is written as it happens, so it is appended line by line rather than
    replaced atomically; each line is whole when flushed."""

    def __init__(self, path: Path | None):
        import sys

        self.path = path
        self.failed = False
        self.fh = open(path, "w", encoding="utf-8") if path else sys.stdout

    def __call__(self, event: dict) -> None:
        try:
            self.fh.write(json.dumps(event) + "\n")
            self.fh.flush()
        except OSError as e:  # a full disk, a closed pipe: the CLI says so in one line
            self.failed = True
            raise OSError(e.errno, e.strerror, str(self.path or "<stdout>")) from None

    def close(self) -> None:
        if self.path:
            try:
                self.fh.close()
            except OSError:
                if not self.failed:
                    raise
