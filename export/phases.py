"""The export's progress: one line as each phase starts, with the seconds since the start,
so a minutes-long ViT export is never silent."""

from __future__ import annotations

import time
from typing import Callable


class Phases:
    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.t0 = time.perf_counter()

    def start(self, what: str) -> None:
        self.say(f"[{time.perf_counter() - self.t0:6.1f} s] {what} ...")
