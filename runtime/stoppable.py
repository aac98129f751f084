"""Model runs that a signal can stop.

While the main thread is inside ONNX Runtime, Python's signal handlers cannot run (they
run between bytecodes of the main thread), so SIGTERM and Ctrl-C would wait for a model
call that may never return (a Loop with a 2^63 trip count). Here a run started on the
main thread executes in a helper thread while the main thread waits in short slices,
so the handler runs, raises, and every active run is told to stop (ONNX Runtime's
RunOptions.terminate, checked between nodes and loop iterations); `terminate_all` does
the same from anywhere (the service on SIGTERM, a batch nobody waits for any more)."""

from __future__ import annotations

import contextlib
import threading

_active: set = set()
_lock = threading.Lock()
_WAIT_SLICE_S = 0.05
_UNWIND_S = 3.0  # how long a terminated run gets to return before the caller gives up on it


@contextlib.contextmanager
def ort_run_options():
    """A RunOptions registered for `terminate_all` while the run lasts."""
    import onnxruntime as ort

    ro = ort.RunOptions()
    ro.log_severity_level = 4  # a stopped run raises; ORT's own error line would only repeat it
    with _lock:
        _active.add(ro)
    try:
        yield ro
    finally:
        with _lock:
            _active.discard(ro)


def terminate_all() -> int:
    """Ask every model run in progress to stop; returns how many were running."""
    with _lock:
        runs = list(_active)
    for ro in runs:
        ro.terminate = True
    return len(runs)


def call_stoppably(fn, *args):
    """fn(*args), run so that a signal handler on the main thread can interrupt it. Off
    the main thread it is a plain call (signals are the main thread's business)."""
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)
    box: dict = {}
    done = threading.Event()  # not Thread.join: a join interrupted by a signal may mark the thread ended

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # handed to the caller
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=target, name="fakedet-model-run", daemon=True).start()
    try:
        while not done.wait(_WAIT_SLICE_S):
            pass
    except BaseException:  # SIGTERM (Terminated), Ctrl-C: stop the run, then let the signal go on
        terminate_all()
        done.wait(_UNWIND_S)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]
