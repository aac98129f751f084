"""Runs the demo's stages in this process, one progress line each, every stage's own
output in OUT/logs/NN-stage.log (so the console shows progress, not chatter)."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path


class _Sink(io.TextIOBase):
    """A stream whose target is switched per stage. Installed as sys.stdout and sys.stderr
    for the whole run, so loggers and warning handlers created inside a stage keep
    writing to a live stream after that stage's log is closed."""

    def __init__(self, target):
        self.target = target
        self.progress = None  # (pattern, console): lines matching it are shown on the console too
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if self.progress is not None:
            pattern, console = self.progress
            *lines, self._partial = (self._partial + s).split("\n")
            for line in lines:
                if pattern.search(line):
                    console.write(f"        {line.strip()}\n")
                    console.flush()
        return self.target.write(s)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False


@dataclass
class StageResult:
    title: str
    seconds: float
    figure: str
    artifact: str
    log: str


class StageFailed(RuntimeError):
    pass


class Runner:
    def __init__(self, out: Path, total: int, console=None):
        self.out, self.total, self.n = out, total, 0
        self.console = console or sys.stdout
        self.results: list[StageResult] = []
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self._sink = _Sink(self.console)

    @contextlib.contextmanager
    def installed(self):
        """Route stdout/stderr through the sink for the whole run."""
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self._sink
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = old

    def say(self, text: str = "") -> None:
        print(text, file=self.console, flush=True)

    def stage(self, title: str, fn, figure=None, artifact: Path | str | None = None, progress: str | None = None):
        """Run fn() with its output in a log; print one line: number, title, seconds, figure.
        Lines of the stage's output matching the regex `progress` also go to the console."""
        self.n += 1
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40]
        log_path = self.out / "logs" / f"{self.n:02d}-{slug}.log"
        if progress:
            self.say(f"[{self.n:2d}/{self.total}] {title} ...")
        t0 = time.perf_counter()
        with open(log_path, "w", encoding="utf-8") as log:
            self._sink.target = log
            self._sink.progress = (re.compile(progress), self.console) if progress else None
            try:
                value = fn()
            except Exception as e:  # every stage's failure ends the demo with its log named
                log.write(traceback.format_exc())
                value = e
            finally:
                self._sink.target = self.console
                self._sink.progress = None
        secs = time.perf_counter() - t0
        if isinstance(value, Exception):
            self.say(f"[{self.n:2d}/{self.total}] {title}: FAILED after {secs:.1f} s ({value}); see {log_path}")
            raise StageFailed(f"stage '{title}' failed; its log: {log_path}")
        text = figure(value) if callable(figure) else (figure or "")
        self.say(f"[{self.n:2d}/{self.total}] {title:<40} {secs:6.1f} s  {text}")
        self.results.append(StageResult(title, secs, text, str(artifact or ""), str(log_path)))
        return value

    def command(self, title: str, args: list, figure=None, artifact=None, ok=(0,), progress: str | None = None):
        """A `fakedet` command run in this process (the same code path as the shell)."""
        from fakedet.cli import main

        def call():
            print("$ fakedet " + " ".join(str(a) for a in args), flush=True)
            rc = main([str(a) for a in args])
            if rc not in ok:
                raise StageFailed(f"fakedet {args[0]} exited with {rc}")
            return rc

        return self.stage(title, call, figure, artifact, progress)
