"""Weights fetched from the model hub (open_clip tags, diffusers autoencoders): when the hub
cannot be reached, say so in one line, at once, with how to pass a local file instead of
waiting out retries and reporting a misleading error (e.g. "no file named config.json")."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import warnings
from urllib.parse import urlparse

from fakedet.errors import DataError, FakedetError, first_line

PROBE_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "yes", "on")


def _offline_env() -> str | None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var} is set"
    return None


@functools.lru_cache(maxsize=None)
def _probe(host: str, port: int) -> str | None:
    result: list = []

    def connect():  # getaddrinfo ignores socket timeouts: run it where it may hang alone
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            result.append(None)
        except OSError as e:
            result.append(first_line(e))

    t = threading.Thread(target=connect, daemon=True)
    t.start()
    t.join(PROBE_TIMEOUT_S + 0.5)
    if not result:
        return f"no answer from {host}:{port} within {PROBE_TIMEOUT_S:g} s"
    return None if result[0] is None else f"cannot connect to {host}:{port}: {result[0]}"


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when it can."""
    why = _offline_env()
    if why:
        return why
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    return _probe(url.hostname or "huggingface.co", port)


@contextlib.contextmanager
def _local_files_only():
    """Make huggingface_hub look only in its cache (no retries against an unreachable host)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


@contextlib.contextmanager
def fetching(what: str, hint: str):
    """Run a hub download; if it fails while the hub is unreachable, raise one DataError:
    '<what>: the weights could not be fetched: the model hub is unreachable (<why>); <hint>'.
    Weights already in the local cache still load offline."""
    why = hub_unreachable()
    try:
        with contextlib.ExitStack() as stack:
            if why:  # cache only, and none of the libraries' warnings about the failed lookup
                stack.enter_context(_local_files_only())
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
            yield
    except FakedetError:
        raise
    except Exception as e:
        if why:
            raise DataError(f"{what}: the weights could not be fetched: the model hub is unreachable ({why}) "
                            f"and they are not in the local cache; {hint}") from None  # fmt: skip
        raise
