"""Temporary and staging folders that name their owner process, so a later run can remove
the ones a killed run left behind (kill -9 runs no cleanup) without touching a live one's."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

LEGACY_AGE_S = 24 * 3600  # folders from before owners were recorded: removed once a day old
_MKDTEMP_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
# fakedet's folders in the temp dir (calibration, its ranges, unzipped packages, QDQ models)
TEMP_PREFIXES = ("fakedet-calibrate-", "fakedet-calib-", "fakedet-pkg-", "fakedet-qdq-")


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner(middle: str) -> int | None:
    head, sep, _ = middle.partition("-")
    return int(head) if sep and head.isdigit() else None


def sweep_stale(parent: str | os.PathLike, prefix: str, suffix: str = "") -> list[Path]:
    """Remove folders `prefix<pid>-<random><suffix>` in `parent` whose process is gone
    (and owner-less ones of the same pattern older than a day). Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            middle = name[len(prefix) : len(name) - len(suffix)]
            pid = _owner(middle)
            if pid is not None:
                stale = not pid_alive(pid)
            elif len(middle) == 8 and set(middle) <= _MKDTEMP_CHARS:  # tempfile's own random part
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_AGE_S
            else:
                continue
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def owned_dir(prefix: str, parent: str | os.PathLike | None = None, suffix: str = "") -> Path:
    """A fresh folder `prefix<pid>-<random><suffix>` in `parent` (default: the temp dir),
    after removing the ones dead processes left there."""
    if parent is None:  # the temp dir: sweep every kind of fakedet folder a killed run leaves there
        parent = Path(tempfile.gettempdir())
        for other in TEMP_PREFIXES:
            if other != prefix:
                sweep_stale(parent, other)
    parent = Path(parent)
    sweep_stale(parent, prefix, suffix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix, dir=parent))


@contextlib.contextmanager
def owned_tempdir(prefix: str):
    """Like tempfile.TemporaryDirectory, with the owner recorded in the name."""
    path = owned_dir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
