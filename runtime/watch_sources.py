"""Why a video source did not open, in the operating system's words where it has some:
`watch` fails at once on a source that was never up (only a stream that was up reconnects)."""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}


def _os_reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def file_reason(path: str) -> str:
    p = Path(path)
    if not p.exists():
        return os.strerror(errno.ENOENT)
    if not p.is_file():
        return "not a file"
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        return _os_reason(e)
    return "OpenCV cannot read it as a video (not a video, or a codec this OpenCV lacks)"


def camera_reason(index: int) -> str:
    if sys.platform.startswith("linux"):
        device = f"/dev/video{index}"
        try:
            fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            return f"{device}: {_os_reason(e)}"
        os.close(fd)
        return f"{device} exists but did not start capturing (in use by another program, or not a camera)"
    return f"no camera {index} could be opened"


def stream_reason(url: str, timeout_s: float) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme)
    if not host or not port:
        return "not a URL fakedet can open (rtsp://, http(s)://, rtmp://)"
    try:
        with socket.create_connection((host, port), timeout=max(timeout_s, 0.1)):
            pass
    except OSError as e:
        return f"{host}:{port}: {_os_reason(e) if not isinstance(e, socket.timeout) else 'no answer'}"
    return f"{host}:{port} answers, but no video stream opened there (wrong path, or a codec this OpenCV lacks)"


def open_failure(source, is_file: bool, timeout_s: float) -> str:
    """One line: `SOURCE: cannot open this video source: REASON`."""
    if isinstance(source, int):
        reason = camera_reason(source)
    elif is_file:
        reason = file_reason(source)
    else:
        reason = stream_reason(source, timeout_s)
    return f"{source}: cannot open this video source: {reason}"
