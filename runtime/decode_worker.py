"""One decode worker process (see decode_pool): images in over a socket, RGB pixels out."""

from __future__ import annotations

import signal
import sys

from fakedet.errors import ImageError, first_line

from .imageio import load_image


def _worker_main(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches the whole group
    conn.send("ready")
    while True:
        try:
            kind, arg, max_pixels, limit_why = conn.recv()
            source = conn.recv_bytes() if kind == "bytes" else arg
        except (EOFError, OSError):
            return
        try:
            img = load_image(source, max_pixels, limit_why=limit_why)
            reply, pixels = ("ok", img.size), img.tobytes()
        except ImageError as e:
            reply, pixels = ("error", e.problem), None
        except Exception as e:  # a decoder bug on hostile bytes: that image's error
            reply, pixels = ("error", f"cannot decode: {type(e).__name__}: {first_line(e)}"), None
        try:
            conn.send(reply)
            if pixels is not None:
                conn.send_bytes(pixels)
        except (BrokenPipeError, OSError):
            return


if __name__ == "__main__":
    from multiprocessing.connection import Connection

    _worker_main(Connection(int(sys.argv[1])))
