"""Atomic file and directory writes: a reader sees the old content or the new, never a half."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _ordinary_mode(fd_or_path) -> None:
    """mkstemp creates 0600 files; give the result the mode a plain open() would."""
    with contextlib.suppress(OSError):
        os.chmod(fd_or_path, 0o666 & ~_umask())


def ordinary_file_modes(directory: str | os.PathLike) -> None:
    """Give every file under `directory` the mode a plain open() would: some writers
    (safetensors' save_file, mkstemp) create 0600 files, unreadable to a service account."""
    for path in Path(directory).rglob("*"):
        if path.is_file() and not path.is_symlink():
            _ordinary_mode(path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    For writers that want a filename (torch.onnx.export, onnx.save, savefig)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _ordinary_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE). False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def replace_dir(staged: Path, dest: Path) -> None:
    """Put the fully written directory `staged` at `dest`, atomically where the OS allows.

    New destination: one rename. Existing destination: an atomic exchange on Linux,
    else two renames with the old copy kept until the new one is in place."""
    staged, dest = Path(staged), Path(dest)
    if not dest.exists():
        os.rename(staged, dest)
        _fsync_dir(dest.parent)
        return
    if _renameat2_exchange(staged, dest):
        shutil.rmtree(staged, ignore_errors=True)  # `staged` now holds the old copy
        _fsync_dir(dest.parent)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.rename(dest, old)
    os.rename(staged, dest)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(dest.parent)


def staging_dir(dest: Path) -> Path:
    """A fresh hidden directory `.NAME.<pid>-<random>.staging` beside `dest` for building its
    replacement; stale ones (their process is gone) are removed first."""
    from .tempdirs import owned_dir

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = owned_dir(f".{dest.name}.", dest.parent, ".staging")  # removes those of killed runs
    with contextlib.suppress(OSError):
        os.chmod(stage, 0o777 & ~_umask())
    return stage


@contextlib.contextmanager
def staged_dir(dest: Path):
    """Build `dest`'s replacement in a staging directory (yielded); on success it is swapped
    in with replace_dir, on any exception (KeyboardInterrupt too) it is removed."""
    stage = staging_dir(dest)
    try:
        yield stage
        replace_dir(stage, Path(dest))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
