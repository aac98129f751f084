"""`fakedet watch`: score the frames of a video file, a stream or a camera."""

from __future__ import annotations

from pathlib import Path

import click

from .selection import BACKENDS, PRECISIONS
from .verdict_cli import operating_point_option


@click.command(
    "watch",
    epilog="""\b
Examples:
  fakedet watch model.fdet --source clip.mp4 --every 5 --out events.jsonl
  fakedet watch model.fdet --source rtsp://cam.local/stream --fps 2 --alert-threshold 0.9 --alert-frames 3
  fakedet watch model.fdet --source http://cam.local/video.mjpg --fps 1
  fakedet watch model.fdet --source 0 --fps 1          # the first camera
\b
Events are JSON lines (stdout, or --out): one per sampled frame (frame index,
stream time, score), an alert when --alert-frames consecutive sampled frames
score >= --alert-threshold (once per run), disconnects and reconnects, and a
summary last. A stream that drops is reopened with doubling back-off (--reconnect-
delay, up to --reconnects attempts), saying so on stderr; each reconnection is a
'reconnected' event. Ctrl-C and SIGTERM stop the watch and print the summary too.
Exit codes: 0 the source ended (or --max-frames was reached), 1 the source was lost
(reconnects used up), 2 usage errors, a source that never opened or output that
cannot be written (full disk, closed pipe), 130 Ctrl-C, 143 SIGTERM.""",
)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--source", required=True, help="Video file, rtsp:// or http(s):// URL, or camera index (0, 1, ...).")
@click.option("--every", type=click.IntRange(min=1), default=None, help="Score every Nth frame.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Score this many frames per second of stream time (instead of --every).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the events here (JSON lines) instead of stdout.")
@click.option("--alert-threshold", type=click.FloatRange(0, 1), default=None,
              help="Score at or above which a frame counts towards an alert (default: the decision threshold).")
@click.option("--alert-frames", type=click.IntRange(min=0), default=0, show_default=True,
              help="Consecutive sampled frames at or above the alert threshold that raise an alert (0: none).")
@click.option("--batch", type=click.IntRange(1, 1024), default=8, show_default=True, help="Frames per inference call.")
@click.option("--reconnects", type=click.IntRange(min=0), default=10, show_default=True,
              help="Attempts to reopen a dropped stream before giving up (0: never).")
@click.option("--reconnect-delay", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="First back-off in seconds; doubled per attempt, up to 8 s.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after reading this many frames.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(("auto",) + BACKENDS),
              help="Inference backend.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(("auto",) + PRECISIONS),
              help="Which artifact precision to run.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Decision threshold on P(fake) (default: the package's).")
@operating_point_option
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="CPU threads for ONNX Runtime.")
@click.option("-q", "--quiet", is_flag=True, help="No messages on stderr except alerts and the summary.")
def watch(package, source, every, fps, out, alert_threshold, alert_frames, batch, reconnects, reconnect_delay,
          max_frames, backend, precision, threshold, operating_point, threads, quiet) -> int:
    """Score frames of a video file, an RTSP/HTTP stream or a camera with PACKAGE."""
    from .detector import Detector
    from .watch import EventLog, Watcher, WatchSettings

    settings = WatchSettings(source=source, every=every, fps=fps, batch=batch, alert_threshold=alert_threshold,
                             alert_frames=alert_frames, reconnects=reconnects, reconnect_delay_s=reconnect_delay,
                             max_frames=max_frames)

    def say(msg: str, always: bool = False) -> None:
        if always or not quiet or msg.startswith("ALERT"):
            click.echo(f"fakedet watch: {msg}", err=True)

    options = {"threads": threads} if threads else {}
    det = Detector.open(package, backend=backend, precision=precision, batch_size=batch, threshold=threshold,
                        operating_point=operating_point, **options)
    events = EventLog(out)
    try:
        say(det.describe())
        watcher = Watcher(det, settings, events, say)
        summary = watcher.run()
        events({"event": "summary", **summary.to_dict(), "operating_point": det.operating_point})
        say(summary.line(), always=True)
    finally:
        events.close()
        det.close()
    return {"interrupted": 130, "terminated": 143, "source lost": 1}.get(summary.ended, 0)
