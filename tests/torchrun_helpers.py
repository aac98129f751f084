"""Launch `fakedet` commands as real processes: under torchrun (2 ranks, CPU, gloo) or alone,
and kill them mid-run. The machine is shared: one thread per process, niced."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def child_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def command(args: list, torchrun: bool, script: Path | None = None) -> list:
    """`fakedet ARGS` as `python -m fakedet`, or as a script that wraps fakedet's main."""
    head = TORCHRUN if torchrun else [sys.executable]
    entry = [str(script)] if script else ["-m", "fakedet"]
    return ["nice", "-n", "10", *head, *entry, *map(str, args)]


def run(args: list, torchrun: bool = False, cwd: Path | None = None, timeout: float = 300,
        env: dict | None = None, script: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command(args, torchrun, script), cwd=cwd, env=child_env(env), capture_output=True, text=True,
                          timeout=timeout)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun's workers run in sessions of their own, so killing
    torchrun's process group leaves them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _kill_tree(pid: int, sig: int) -> None:
    for p in [*descendants(pid), pid]:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def run_and_kill(args: list, ready, torchrun: bool = False, cwd: Path | None = None, timeout: float = 300,
                 sig: int = signal.SIGKILL) -> int:
    """Start the command and send `sig` to it and every process below it (torchrun and its
    workers: a machine going down) as soon as `ready()` is true. Returns the exit status (negative: the signal);
    a run that finished before `ready()` held returns 0 and the caller should say so."""
    proc = subprocess.Popen(command(args, torchrun), cwd=cwd, env=child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                _kill_tree(proc.pid, sig)
                break
            time.sleep(0.005)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def hidden_leftovers(root: Path) -> list:
    """Temporary files or staging folders (names starting with '.') anywhere under `root`."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob(".*"))
